"""What the "102" Telegram bot says to citizens: the fixed texts in kk/ru/en, the reply keyboard
and the notices about their incident.

Only these fixed texts and a dispatcher's own words ever reach a citizen: no officer names, units,
categories or other incidents. Everything is sent as plain text (no parse_mode).
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.telegram_updates import Language, sanitise

NOTICE_STATUSES = ("assigned", "en_route", "on_scene", "closed")
MAX_NOTICE_UTF16 = 3900  # a dispatcher's words plus our prefix stay under Telegram's 4096

TEXTS: dict[str, dict[Language, str]] = {
    "greeting": {
        "kk": "Сәлеметсіз бе! Бұл — 102 полиция боты. Не болғанын жазыңыз, фото, бейне, дауыстық хабарлама "
              "немесе орналасқан жеріңізді жіберіңіз. Сізге қайта қоңырау шалу үшін төмендегі батырмамен "
              "телефон нөміріңізді жіберіңіз. Өмірге қауіп төнсе, 102 немесе 112 нөміріне қоңырау шалыңыз.",
        "ru": "Здравствуйте! Это бот полиции 102. Опишите, что случилось: напишите сообщение, отправьте фото, "
              "видео, голосовое сообщение или место. Чтобы мы могли перезвонить, отправьте свой номер телефона "
              "кнопкой ниже. Если жизнь в опасности, звоните 102 или 112.",
        "en": "Hello! This is the police 102 bot. Tell us what happened: write a message, send a photo, video, "
              "voice note or your location. So that we can call you back, share your phone number with the "
              "button below. If a life is in danger, call 102 or 112.",
    },
    "help": {
        "kk": "Не болғанын жазыңыз немесе фото, бейне, дауыстық хабарлама, орналасқан жеріңізді жіберіңіз. "
              "Шұғыл жағдайда 102 немесе 112 нөміріне қоңырау шалыңыз.",
        "ru": "Напишите, что случилось, или отправьте фото, видео, голосовое сообщение, место. "
              "В срочном случае звоните 102 или 112.",
        "en": "Write what happened, or send a photo, video, voice note or location. "
              "In an emergency call 102 or 112.",
    },
    "share_phone": {"kk": "📞 Нөмірімді жіберу", "ru": "📞 Отправить мой номер", "en": "📞 Share my number"},
    "share_location": {"kk": "📍 Орналасқан жерімді жіберу", "ru": "📍 Отправить моё место",
                       "en": "📍 Share my location"},
    "registered": {
        "kk": "Хабарламаңыз қабылданды және 102 кезекшісіне жіберілді. Өтініш нөмірі: {ref}. "
              "Әрі қарай жіберген барлық нәрсе осы өтінішке қосылады.",
        "ru": "Ваше сообщение принято и передано дежурному 102. Номер обращения: {ref}. "
              "Всё, что вы отправите дальше, будет добавлено к нему.",
        "en": "Your report has been received and passed to the 102 duty officer. Report number: {ref}. "
              "Anything you send next will be added to it.",
    },
    "added": {"kk": "Өтінішіңізге қосылды.", "ru": "Добавлено к вашему обращению.", "en": "Added to your report."},
    "phone_saved": {
        "kk": "Рахмет, нөміріңіз сақталды: {number}.",
        "ru": "Спасибо, ваш номер сохранён: {number}.",
        "en": "Thank you, your number is saved: {number}.",
    },
    "phone_unusable": {
        "kk": "Нөміріңізді тани алмадық. Егер шұғыл болса, 102 нөміріне қоңырау шалыңыз.",
        "ru": "Не удалось распознать ваш номер. Если срочно, звоните 102.",
        "en": "We could not read your number. If it is urgent, call 102.",
    },
    "contact_refused": {
        "kk": "Тек өз нөміріңізді «Нөмірімді жіберу» батырмасымен жібере аласыз. Басқа адамның байланысы "
              "сіздің нөміріңіз ретінде қабылданбайды.",
        "ru": "Отправить можно только свой номер — кнопкой «Отправить мой номер». Чужой контакт не принят "
              "как ваш номер.",
        "en": "You can only share your own number, with the \"Share my number\" button. Someone else's "
              "contact is not taken as your number.",
    },
    "bad_location": {
        "kk": "Орналасқан жерді оқи алмадық. Төмендегі батырмамен қайта жіберіңіз.",
        "ru": "Не удалось прочитать местоположение. Отправьте его ещё раз кнопкой ниже.",
        "en": "We could not read that location. Please send it again with the button below.",
    },
    "unsupported": {
        "kk": "Мен мәтінді, фото, бейне, дауыстық хабарламаны, орналасқан жерді және өз нөміріңізді қабылдаймын.",
        "ru": "Я принимаю текст, фото, видео, голосовые сообщения, местоположение и ваш номер телефона.",
        "en": "I accept text, photos, videos, voice notes, locations and your own phone number.",
    },
    "edited": {
        "kk": "Өзгертілген хабарламалар өңделмейді — жаңасын жіберіңіз.",
        "ru": "Исправления сообщений не обрабатываются — отправьте новое сообщение.",
        "en": "Edited messages are not processed — please send a new message.",
    },
    "truncated": {
        "kk": "Хабарлама тым ұзын: тек алғашқы {limit} таңба қабылданды.",
        "ru": "Сообщение слишком длинное: принято только первые {limit} символов.",
        "en": "Your message was too long: only the first {limit} characters were kept.",
    },
    "flood": {
        "kk": "Хабарламалар тым көп. Бір минут күтіңіз — кейбір хабарламалар қабылданбады. "
              "Шұғыл болса, 102 нөміріне қоңырау шалыңыз.",
        "ru": "Слишком много сообщений. Подождите минуту — часть сообщений не принята. Если срочно, звоните 102.",
        "en": "Too many messages. Please wait a minute — some messages were not accepted. "
              "If it is urgent, call 102.",
    },
    "unavailable": {
        "kk": "Техникалық ақау салдарынан хабарламаңызды қабылдай алмадық. 102 нөміріне қоңырау шалыңыз.",
        "ru": "Не удалось принять сообщение из-за технической ошибки. Пожалуйста, позвоните 102.",
        "en": "We could not accept your message because of a technical fault. Please call 102.",
    },
    "status_assigned": {
        "kk": "Өтінішіңізге полиция жасағы тағайындалды.",
        "ru": "По вашему обращению назначен наряд полиции.",
        "en": "A police unit has been assigned to your report.",
    },
    "status_en_route": {
        "kk": "Полиция жасағы сізге шықты.",
        "ru": "Наряд полиции выехал к вам.",
        "en": "Police are on the way.",
    },
    "status_on_scene": {
        "kk": "Полиция жасағы оқиға орнына келді.",
        "ru": "Наряд полиции прибыл на место.",
        "en": "Police have arrived at the scene.",
    },
    "status_closed": {
        "kk": "Өтінішіңіз жабылды. Рахмет! Жаңа оқиға туралы хабарлау үшін осында жазыңыз.",
        "ru": "Ваше обращение закрыто. Спасибо! Чтобы сообщить о новом происшествии, просто напишите сюда.",
        "en": "Your report is closed. Thank you! To report something new, just write here.",
    },
    "dispatcher": {
        "kk": "102 кезекшісінің хабарламасы:\n{text}",
        "ru": "Сообщение от дежурного 102:\n{text}",
        "en": "Message from the 102 duty officer:\n{text}",
    },
}


def text(key: str, language: str, **values: str | int) -> str:
    """A citizen-facing text in ``language`` (Russian when we do not speak it)."""
    texts = TEXTS[key]
    chosen = texts.get(language, texts["ru"])  # type: ignore[call-overload]
    return chosen.format(**values) if values else chosen


def share_keyboard(language: str, *, phone: bool = True) -> dict[str, Any]:
    """The reply keyboard offering the citizen's own number (request_contact) and location."""
    rows = [[{"text": text("share_location", language), "request_location": True}]]
    if phone:
        rows.insert(0, [{"text": text("share_phone", language), "request_contact": True}])
    return {"keyboard": rows, "resize_keyboard": True, "is_persistent": True}


def notice(kind: str, data: dict[str, Any], language: str, max_text: int = 2000) -> str | None:
    """What to tell the citizen about one timeline event of their incident, or None.

    Only the new status and a dispatcher's reply text are used; every other field (actor, units,
    notes) stays inside the centre."""
    if kind == "status_changed" and data.get("status") in NOTICE_STATUSES:
        return text(f"status_{data['status']}", language)
    if kind == "citizen_replied" and isinstance(data.get("text"), str):
        body = _fit_utf16(sanitise(data["text"], max_text)[0], MAX_NOTICE_UTF16)
        return text("dispatcher", language, text=body) if body else None
    return None


def _fit_utf16(body: str, limit: int) -> str:
    """Cut ``body`` to ``limit`` UTF-16 units (how Telegram counts its 4096), marking the cut."""
    if len(body.encode("utf-16-le")) // 2 <= limit:
        return body
    while len(body.encode("utf-16-le")) // 2 > limit - 1:
        body = body[: len(body) - max(1, (len(body.encode("utf-16-le")) // 2 - limit) // 2)]
    return body.rstrip() + "…"
