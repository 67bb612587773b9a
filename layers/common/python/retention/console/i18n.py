"""The console's two languages: English (the keys) and Russian (the seeds' market).

`pick` chooses from the language cookie (the switch), then Accept-Language, then English. `translator`
returns `t(text, **values)`: the Russian text when there is one, else the English, formatted with values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LANGS = ("en", "ru")

RU: dict[str, str] = {
    "Retention console": "Консоль удержания",
    "Sign in": "Войти",
    "Sign out": "Выйти",
    "Token": "Токен",
    "Paste your personal token (rt_…). An admin creates it with `retention tokens create`.":
        "Вставьте ваш личный токен (rt_…). Его создаёт администратор командой `retention tokens create`.",
    "Overview": "Обзор",
    "Rules": "Правила",
    "Customers": "Клиенты",
    "Segments": "Сегменты",
    "Templates": "Шаблоны",
    "Audit log": "Журнал изменений",
    "Tokens": "Токены",
    "Signed in as {name} ({role})": "Вы вошли как {name} ({role})",
    "The session expired: sign in again.": "Сессия истекла: войдите снова.",
    "This token is not valid.": "Этот токен недействителен.",
    "Last 30 days": "Последние 30 дней",
    "Last 7 days": "Последние 7 дней",
    "Today": "Сегодня",
    "Entered": "Вошли",
    "Sent": "Отправлено",
    "Delivered": "Доставлено",
    "Opened": "Открыто",
    "Clicked": "Клики",
    "Converted": "Конверсии",
    "Revenue": "Выручка",
    "Unsubscribed": "Отписки",
    "Suppressed": "Подавлено",
    "Sends by channel": "Отправки по каналам",
    "Channel": "Канал",
    "Lifecycle": "Жизненный цикл",
    "Lifecycle sizes": "Размеры этапов жизненного цикла",
    "Flows": "Переходы",
    "Customers in the stage": "Клиентов на этапе",
    "Sending": "Отправка",
    "Marketing sends are active.": "Маркетинговые рассылки идут.",
    "Marketing sends are paused since {since}: {reason}.": "Маркетинговые рассылки остановлены с {since}: {reason}.",
    "Resume sending": "Возобновить отправку",
    "Bounce rate": "Доля отказов",
    "Complaint rate": "Доля жалоб",
    "Pending sends": "Ожидающие отправки",
    "Anything failing?": "Что-то сломалось?",
    "Dead letters": "В очередях недоставленных",
    "Messages failed five times and wait in a dead-letter queue: see the logs, then redrive them in SQS.":
        "Сообщения пять раз не обработались и лежат в очереди недоставленных: посмотрите журналы, затем "
        "верните их в работу (redrive) в SQS.",
    "A queue did not answer: the number is unknown.": "Очередь не ответила: число неизвестно.",
    "Nothing is failing.": "Всё работает.",
    "Queue": "Очередь",
    "Waiting": "Ждут",
    "In flight": "В обработке",
    "Delayed": "Отложены",
    "Events": "События",
    "Recent comments": "Последние комментарии",
    "Daily sizes": "Размеры по дням",
    "Segment history": "История сегментов",
    "Daily sizes and flows": "Размеры по дням и переходы",
    "{n} days": "{n} дн.",
    "Or build it: field, operator, value": "Или соберите его: поле, оператор, значение",
    "Customers who match": "Клиенты, подходящие под",
    "every row (all)": "все строки (all)",
    "any row (any)": "любую строку (any)",
    "Field": "Поле",
    "Operator": "Оператор",
    "Value": "Значение",
    "Add a row": "Добавить строку",
    "Numbers for KPIs; a time since as 30d or 6mo; consent states: granted, pending, refused, unknown; segments "
    "as group/id. The YAML it makes goes into the box above.":
        "Для KPI — числа; давность — как 30d или 6mo; согласие: granted, pending, refused, unknown; сегменты — "
        "как группа/id. Получившийся YAML появится в поле выше.",
    "Comment": "Комментарий",
    "Customer": "Клиент",
    "Stage": "Этап",
    "Shop": "Магазин",
    "NPS": "NPS",
    "answers": "ответов",
    "no answers yet": "ответов пока нет",
    "Rule": "Правило",
    "Title": "Название",
    "State": "Состояние",
    "enabled": "включено",
    "disabled": "выключено",
    "Enable": "Включить",
    "Disable": "Выключить",
    "Version": "Версия",
    "Edit YAML": "Редактировать YAML",
    "Save": "Сохранить",
    "Check": "Проверить",
    "Cancel": "Отмена",
    "Journey": "Сценарий",
    "Trigger": "Запуск",
    "Audience": "Аудитория",
    "Goal": "Цель",
    "Holdout": "Контрольная группа",
    "wait {what}": "ждать {what}",
    "send {channel}: {template}": "отправить {channel}: {template}",
    "Step": "Шаг",
    "Variant": "Вариант",
    "Stats per step and variant": "Статистика по шагам и вариантам",
    "A/B tests": "A/B-тесты",
    "Holdout uplift": "Прирост к контрольной группе",
    "not enough data yet (n = {n})": "пока мало данных (n = {n})",
    "{winner} wins: {diff} pp conversion, {sure} % sure":
        "{winner} побеждает: {diff} п.п. конверсии, уверенность {sure} %",
    "no clear winner yet ({diff} pp, p = {p})": "явного победителя пока нет ({diff} п.п., p = {p})",
    "the journey adds {diff} pp conversion over the holdout, {sure} % sure":
        "сценарий добавляет {diff} п.п. конверсии к контрольной группе, уверенность {sure} %",
    "no proven effect over the holdout yet ({diff} pp, p = {p})":
        "эффект относительно контрольной группы пока не доказан ({diff} п.п., p = {p})",
    "The YAML has errors; nothing was saved.": "В YAML есть ошибки; ничего не сохранено.",
    "Saved as version {version}.": "Сохранено как версия {version}.",
    "Nothing changed.": "Ничего не изменилось.",
    "Warnings": "Предупреждения",
    "line": "строка",
    "Versions": "Версии",
    "Roll back to": "Откатить к",
    "Search by id, email or phone": "Поиск по id, e-mail или телефону",
    "Search": "Найти",
    "No customer {q}.": "Клиент {q} не найден.",
    "Profile": "Профиль",
    "Traits": "Атрибуты",
    "Consent": "Согласие",
    "KPIs": "Показатели",
    "Journeys": "Сценарии",
    "Messages": "Сообщения",
    "Timeline": "Хронология",
    "Erase": "Удалить",
    "Erase this customer": "Удалить данные клиента",
    "Type the customer id to confirm; everything naming the person is deleted.":
        "Введите id клиента для подтверждения; всё, что касается человека, будет удалено.",
    "The confirmation does not match the customer id.": "Подтверждение не совпадает с id клиента.",
    "Customer {id} was erased.": "Данные клиента {id} удалены.",
    "Group": "Группа",
    "Segment": "Сегмент",
    "Size": "Размер",
    "Preview": "Предпросмотр",
    "Customer for the preview (id or email)": "Клиент для предпросмотра (id или e-mail)",
    "When": "Когда",
    "Who": "Кто",
    "Role": "Роль",
    "Action": "Действие",
    "Kind": "Тип",
    "Name": "Имя",
    "Expires": "Истекает",
    "Create token": "Создать токен",
    "Revoke": "Отозвать",
    "The new token (shown once):": "Новый токен (показывается один раз):",
    "Forbidden": "Запрещено",
    "Not found": "Не найдено",
    "Something is wrong": "Что-то пошло не так",
    "Back": "Назад",
    "yes": "да",
    "no": "нет",
    "Description": "Описание",
    "Language": "Язык",
    "Daily sends and conversions": "Отправки и конверсии по дням",
    "none": "нет",
    "Dry-run": "Пробный прогон",
    "Replay the stored events of the last N days through this rule (nothing is sent)":
        "Прогнать через правило сохранённые события за последние N дней (ничего не отправляется)",
    "{entries} entries, {sends} sends for {customers} customers ({events} events examined)":
        "{entries} входов, {sends} отправок для {customers} клиентов (просмотрено событий: {events})",
    "first page only": "только первая страница",
    "future": "в будущем",
    "Settings": "Настройки",
    "Saved.": "Сохранено.",
    "Count matching customers": "Посчитать подходящих клиентов",
    "Condition (YAML)": "Условие (YAML)",
    "{matched} of {scanned} customers match (first page of about {total})":
        "подходят {matched} из {scanned} клиентов (первая страница, всего около {total})",
    "Assign a segment": "Назначить сегмент",
    "Reason": "Причина",
    "Assign": "Назначить",
    "Score": "Индекс",
    "By stage": "По этапам",
    "By shop": "По магазинам",
    "Trend": "Динамика",
    "Outbox (local)": "Исходящие (локально)",
    "Catalogue": "Каталог",
    "Catalogue and coupons": "Каталог и купоны",
    "Coupon pools": "Пулы купонов",
    "Upload codes": "Загрузить коды",
    "Product": "Товар",
    # the template page's test send; people's addresses on the tokens page
    "Send a test to me": "Отправить тест себе",
    "Send a test to": "Отправить тест на",
    "Test queued for": "Тест отправлен в очередь для",
    "The template rendered with the sample customer (no real customer's data), subject prefixed [TEST], a placeholder "
    "coupon code and inert links; quiet hours and consent do not apply.":
        "Шаблон с данными примерного клиента (без данных настоящих клиентов), тема с префиксом [TEST], "
        "код купона-заглушка и неактивные ссылки; тихие часы и согласия не применяются.",
    "You have no email address on record, so a test cannot be sent.":
        "У вас не указан адрес электронной почты, поэтому тест отправить нельзя.",
    "Set it on the Tokens page": "Укажите его на странице «Токены»",
    "Ask an admin to set it on the console's Tokens page (People's email addresses).":
        "Попросите администратора указать его на странице «Токены» консоли (адреса сотрудников).",
    "People's email addresses": "Адреса сотрудников",
    "A person's own address: the only place the console's test sends go. Leave it empty to remove it.":
        "Личный адрес сотрудника: тестовые письма консоли уходят только туда. Пустое поле удаляет адрес.",
    "Email": "Эл. почта",
    "Message": "Сообщение",
    "Back to the profile": "Назад к профилю",
    "Re-rendered from template version {n} with the customer's current profile: not the stored bytes "
    "(message bodies are not kept).":
        "Заново отрисовано по версии шаблона {n} с текущим профилем клиента: это не сохранённые байты "
        "(тексты писем не хранятся).",
    "The version sent ({n}) is no longer stored: the current version is shown.":
        "Отправленная версия ({n}) больше не хранится: показана текущая версия.",
    "The template version sent was not recorded (sent before versions were kept): the current version is shown.":
        "Версия шаблона при отправке не записана (отправлено до её учёта): показана текущая версия.",
    "Subject as sent": "Тема при отправке",
    "Coupon given": "Выданный купон",
    "Trigger event": "Событие-триггер",
    "Text part": "Текстовая часть",
    "Sent at": "Отправлено",
    "Products shown when sent": "Товары в отправленном письме",
    "the cards below are recommended afresh": "карточки ниже подобраны заново",
}


def pick(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGS:
        return str(cookie)
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        bits = part.strip().split(";")
        code = bits[0].strip().lower()[:2]
        q = 1.0
        for b in bits[1:]:
            if b.strip().startswith("q="):
                try:
                    q = float(b.strip()[2:])
                except ValueError:
                    q = 0.0
        if code in LANGS and q > best_q:
            best, best_q = code, q
    return best


def translator(lang: str) -> Callable[..., str]:
    table = RU if lang == "ru" else {}

    def t(text: str, **values: Any) -> str:
        out = table.get(text, text)
        return out.format(**values) if values else out
    return t
