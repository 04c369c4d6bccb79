"""`switchboard telegram`: the bot's webhook at Telegram."""

from __future__ import annotations

import click

from switchboard.cli.base import load_settings, main


@main.group()
def telegram() -> None:
    """Telegram: connect the bot to this Switchboard."""


@telegram.command("set-webhook")
def telegram_set_webhook() -> None:
    """Tell Telegram to send updates to SWITCHBOARD_PUBLIC_URL/webhooks/telegram with the secret token."""
    from telegram.error import TelegramError

    from connectors.telegram import TelegramClient

    settings = load_settings()
    missing = [name for name, value in (("SWITCHBOARD_TELEGRAM_TOKEN", settings.telegram_token),
                                        ("SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET", settings.telegram_webhook_secret))
               if not value]
    if missing:
        raise click.ClickException(f"set {' and '.join(missing)} first")
    if not settings.public_url.startswith("https://"):
        raise click.ClickException(f"Telegram sends webhooks only to HTTPS; SWITCHBOARD_PUBLIC_URL is "
                                   f"{settings.public_url}")
    url = settings.public_url.rstrip("/") + "/webhooks/telegram"
    client = TelegramClient(settings.telegram_token, settings.telegram_api_url)
    try:
        client.call(client.bot.set_webhook(url=url, secret_token=settings.telegram_webhook_secret,
                                           allowed_updates=["message", "callback_query"]))
    except TelegramError as exc:
        raise click.ClickException(f"Telegram refused the webhook: {exc.message}") from exc
    finally:
        client.close()
    click.echo(f"Telegram sends this bot's updates to {url} now.")
