// Labels in the three languages of the centre; a person's own language is the default.
export const TEXT = {
  ru: {
    title: "ЦОУ 102/112", login_title: "Вход", name: "Имя", password: "Пароль", position: "Пульт", login: "Войти",
    logout: "Выйти", queue: "Происшествия", waiting: "Ожидание", service: "Служба", priority: "Приоритет",
    number: "Номер", category: "Категория", state: "Состояние", incident: "Происшествие", locations: "Местоположения",
    source: "Источник", shape: "Форма", uncertainty: "Погрешность", confidence: "Достоверность", method: "Метод",
    address: "Адрес", timeline: "Хронология", withheld: "скрыт", chosen: "выбрано", no_location: "нет координат",
    keys_hint: "↑/↓ — выбор, Enter — открыть карточку", status_assigned: "Назначено", status_en_route: "В пути",
    status_on_scene: "На месте", status_closed: "Закрыть", none: "—",
    login_wrong: "Неверное имя или пароль", login_locked: "Слишком много неверных паролей: вход заблокирован",
    login_disabled: "Учётная запись отключена", escalation: "Оповещение", step: "шаг", attempt: "попытка",
    next_in: "следующая через", acknowledge: "Подтвердить", acked: "подтвердил", pending: "ждём ответа",
    no_runs: "сценарий не запущен", failed: "не доставлено", board: "Обстановка за час", unit: "Наряд",
    b_sla: "Отвечено за 15 с", b_calls: "Вызовов", b_abandoned: "Брошено", b_waiting: "В очереди",
    b_longest: "Дольше всех ждёт", b_runs: "Оповещений идёт", b_breaches: "Нарушений норматива",
    b_positions: "Пульты", desk: "Пульт", warnings: "Оповещение населения", compose: "Новое оповещение",
    event: "Событие", w_status: "Режим", exercise: "Учения", test: "Проверка", actual: "Реальное",
    actual_banner: "РЕАЛЬНОЕ ОПОВЕЩЕНИЕ: получит всё население зон", actual_confirm: "Отправить РЕАЛЬНОЕ оповещение населению?",
    zones: "Зоны", channels: "Каналы", note: "Примечание", submit_draft: "На утверждение", alerts: "Оповещения",
    drafted_by: "Составил", progress: "Доставка", approve_send: "Утвердить и отправить", preview: "Просмотр",
    cancel_alert: "Отменить", new_incident: "Новое происшествие (обращение, рация)", create: "Создать",
    units_near: "Ближайшие свободные наряды", assign: "Назначить", add_note: "Добавить заметку", no_units: "нет свободных",
  },
  kk: {
    title: "ЖБО 102/112", login_title: "Кіру", name: "Аты", password: "Құпиясөз", position: "Пульт", login: "Кіру",
    logout: "Шығу", queue: "Оқиғалар", waiting: "Күту", service: "Қызмет", priority: "Басымдық", number: "Нөмір",
    category: "Санат", state: "Күйі", incident: "Оқиға", locations: "Орналасқан жерлер", source: "Дереккөз",
    shape: "Пішін", uncertainty: "Қателік", confidence: "Сенімділік", method: "Әдіс", address: "Мекенжай",
    timeline: "Хронология", withheld: "жасырын", chosen: "таңдалған", no_location: "координат жоқ",
    keys_hint: "↑/↓ — таңдау, Enter — картаны ашу", status_assigned: "Тағайындалды", status_en_route: "Жолда",
    status_on_scene: "Орнында", status_closed: "Жабу", none: "—",
    login_wrong: "Аты немесе құпиясөз қате", login_locked: "Қате құпиясөз тым көп: кіру бұғатталды",
    login_disabled: "Тіркелгі өшірілген", escalation: "Хабарлау", step: "қадам", attempt: "әрекет",
    next_in: "келесісі", acknowledge: "Растау", acked: "растады", pending: "жауап күтілуде",
    no_runs: "сценарий іске қосылмаған", failed: "жеткізілмеді", board: "Соңғы сағат", unit: "Жасақ",
    b_sla: "15 с ішінде жауап", b_calls: "Қоңыраулар", b_abandoned: "Тасталған", b_waiting: "Кезекте",
    b_longest: "Ең ұзақ күту", b_runs: "Хабарлаулар", b_breaches: "Норматив бұзылды", b_positions: "Пульттер",
    desk: "Пульт", warnings: "Халықты хабардар ету", compose: "Жаңа хабарлама", event: "Оқиға", w_status: "Режим",
    exercise: "Жаттығу", test: "Тексеру", actual: "Нақты", actual_banner: "НАҚТЫ ХАБАРЛАМА: аймақтардың бүкіл халқы алады",
    actual_confirm: "НАҚТЫ хабарламаны халыққа жіберу керек пе?", zones: "Аймақтар", channels: "Арналар",
    note: "Ескерту", submit_draft: "Бекітуге жіберу", alerts: "Хабарламалар", drafted_by: "Құрастырған",
    progress: "Жеткізу", approve_send: "Бекіту және жіберу", preview: "Қарау", cancel_alert: "Болдырмау",
    new_incident: "Жаңа оқиға (келген адам, рация)", create: "Құру", units_near: "Ең жақын бос жасақтар",
    assign: "Тағайындау", add_note: "Жазба қосу", no_units: "бос жасақ жоқ",
  },
  en: {
    title: "Control centre 102/112", login_title: "Log in", name: "Name", password: "Password", position: "Position",
    login: "Log in", logout: "Log out", queue: "Incidents", waiting: "Waiting", service: "Service",
    priority: "Priority", number: "Number", category: "Category", state: "State", incident: "Incident",
    locations: "Locations", source: "Source", shape: "Shape", uncertainty: "Uncertainty", confidence: "Confidence",
    method: "Method", address: "Address", timeline: "Timeline", withheld: "withheld", chosen: "chosen",
    no_location: "no position", keys_hint: "↑/↓ select, Enter opens the card", status_assigned: "Assigned",
    status_en_route: "En route", status_on_scene: "On scene", status_closed: "Close", none: "—",
    login_wrong: "Wrong name or password", login_locked: "Too many wrong passwords: logging in is locked",
    login_disabled: "This account is disabled", escalation: "Escalation", step: "step", attempt: "attempt",
    next_in: "next in", acknowledge: "Acknowledge", acked: "acknowledged", pending: "notification pending",
    no_runs: "no scenario running", failed: "not delivered", board: "The last hour", unit: "Unit",
    b_sla: "Answered within 15 s", b_calls: "Calls", b_abandoned: "Abandoned", b_waiting: "Waiting",
    b_longest: "Longest wait", b_runs: "Escalations running", b_breaches: "SLA breaches", b_positions: "Positions",
    desk: "Desk", warnings: "Public warnings", compose: "New alert", event: "Event", w_status: "Status",
    exercise: "Exercise", test: "Test", actual: "Actual", actual_banner: "ACTUAL ALERT: everyone in the zones gets it",
    actual_confirm: "Send an ACTUAL alert to the public?", zones: "Zones", channels: "Channels", note: "Note",
    submit_draft: "Submit for approval", alerts: "Alerts", drafted_by: "Drafted by", progress: "Delivery",
    approve_send: "Approve and send", preview: "Preview", cancel_alert: "Cancel",
    new_incident: "New incident (walk-in, radio)", create: "Create", units_near: "Nearest free units",
    assign: "Assign", add_note: "Add note", no_units: "none free",
  },
};

export function t(language, key) {
  return (TEXT[language] || TEXT.ru)[key] ?? key;
}

export function translate(root, language) {
  for (const el of root.querySelectorAll("[data-t]")) el.textContent = t(language, el.dataset.t);
  document.documentElement.lang = language;
}
