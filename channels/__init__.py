"""Delivery channels for public warnings and notifications: one small interface, many drivers."""

from channels.base import Channel, ChannelHealth, Message, Receipt, UpdateCallback, failed

__all__ = ["Channel", "ChannelHealth", "Message", "Receipt", "UpdateCallback", "failed"]
