"""The console's routes: pages that read (GET) and actions that change something (POST, signed
in, CSRF-checked, confirmed first). Handlers are thin: reads come from :class:`StackReads`,
actions are planned and carried out by :mod:`~scripts.console.desk`, pages are templates.

    GET  /signin, POST /signin, POST /signout
    GET  /stuck?minutes=30&reason=retrying      the stuck and failing orders, with counts by reason
    GET  /orders?order_id=...                   find an order; /orders/{id} shows it
    GET  /identities?status=submitted           identities waiting for a decision (A2)
    GET  /accounts?status=locked                locked or restricted accounts (A6); /accounts/{id}
    GET  /dead-letters                          what no service could process, secrets masked
    GET  /notifications                         emails retrying or dead-lettered (N2)
    GET  /audit                                 every action taken here: who, when, why, outcome
    POST /act/{kind}/{subject}                  an action: the confirmation page, then (confirmed) the deed
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from scripts.cli.dead_letters import dead_letter_json
from scripts.cli.orders import money_text
from scripts.cli.timeline import next_deadline, utc_text
from scripts.console.auth import COOKIE, OperatorAccount, Session, Sessions, csrf_ok
from scripts.console.desk import (
    ORDER_ACTIONS,
    REJECTION_REASONS,
    RESOLUTIONS,
    ActionRefused,
    Desk,
    new_action_id,
    plan,
)
from scripts.console.reads import StackReads, Unavailable
from scripts.console.settings import ConsoleSettings
from scripts.http_server import serve_app

HERE = Path(__file__).parent
STUCK_REASONS = ("waiting_on_operator", "compensating", "retrying", "no_progress")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = logging.getLogger(__name__)
Page = Callable[[Request, Session], Awaitable[Response]]


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["money"] = money_text
    templates.env.filters["when"] = _when
    templates.env.globals["order_actions"] = ORDER_ACTIONS
    templates.env.globals["resolutions"] = RESOLUTIONS
    templates.env.globals["rejection_reasons"] = REJECTION_REASONS
    templates.env.globals["new_action_id"] = new_action_id
    return templates


def _when(value: str | datetime | None) -> str:
    """An ISO time (or a datetime) as ``2026-03-01 12:00:05 UTC``."""
    if not value:
        return ""
    return utc_text(datetime.fromisoformat(value) if isinstance(value, str) else value)


class Console:
    """The app's state: settings, sign-in, reads, the desk, the templates."""

    def __init__(self, settings: ConsoleSettings, bootstrap_servers: str) -> None:
        self.settings = settings
        self.operator = OperatorAccount(settings.operator_id, settings.password_hash)
        self.sessions = Sessions(timedelta(minutes=settings.session_minutes))
        self.reads = StackReads(settings.state_dir, bootstrap_servers)
        self.desk = Desk(
            bootstrap_servers,
            settings.state_dir,
            settings.audit_file,
            clock=self.reads,  # the stack's clock: the audit log and the timeline agree
            answer_seconds=settings.answer_seconds,
        )
        self.templates = _templates()

    def now(self) -> datetime:
        return datetime.now(UTC)  # sessions expire on the wall clock, whatever the stack's says

    def render(self, request: Request, name: str, session: Session | None, code: int = 200, **values: Any) -> Response:
        context = {"session": session, "path": request.url.path, **values}
        response = self.templates.TemplateResponse(request, name, context, status_code=code)
        response.headers.update(SECURITY_HEADERS)
        return response

    # ------------------------------------------------------------------ signing in

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.find(request.cookies.get(COOKIE), self.now())

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page for the signed in only; a POST also needs the session's CSRF token."""

        async def guarded(request: Request) -> Response:
            session = self.session_of(request)
            if session is None:
                return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
            if request.method == "POST":
                form = await request.form()
                if not csrf_ok(session, form.get("csrf_token")):
                    return self.render(
                        request,
                        "error.html",
                        session,
                        403,
                        message="the form's CSRF token does not match this session: open the page again",
                    )
            return await handler(request, session)

        return guarded

    async def signin_page(self, request: Request) -> Response:
        return self.render(request, "signin.html", None, next=_local(request.query_params.get("next")))

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        operator_id, password = str(form.get("operator_id", "")), str(form.get("password", ""))
        target = _local(str(form.get("next", "")))
        if not self.operator.check(operator_id, password):
            log.warning("console sign-in refused")  # neither the name tried nor the password
            return self.render(request, "signin.html", None, 401, next=target, error="wrong operator or password")
        response = RedirectResponse(target, status_code=303)
        session_id = self.sessions.open(operator_id, self.now())
        response.set_cookie(
            COOKIE, session_id, httponly=True, samesite="strict", max_age=self.settings.session_minutes * 60
        )
        return response

    async def signout(self, request: Request, _session: Session) -> Response:
        self.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # ------------------------------------------------------------------ reading

    async def stuck(self, request: Request, session: Session) -> Response:
        query = request.query_params
        minutes = int(query["minutes"]) if query.get("minutes", "").isdigit() else 30
        reason = query.get("reason") if query.get("reason") in STUCK_REASONS else None
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        try:
            body, problem = await self.reads.stuck(max(1, minutes), reason, max(1, page)), None
        except Unavailable as error:
            body, problem = {}, str(error)
        rows = [{**o, "deadline": next_deadline(o)} for o in body.get("orders", [])]
        return self.render(
            request,
            "stuck.html",
            session,
            body=body,
            orders=rows,
            minutes=minutes,
            reason=reason,
            reasons=STUCK_REASONS,
            problem=problem,
        )

    async def find_order(self, request: Request, _session: Session) -> Response:
        wanted = request.query_params.get("order_id", "").strip()
        return RedirectResponse(f"/orders/{quote(wanted, safe='')}" if wanted else "/stuck", status_code=303)

    async def order(self, request: Request, session: Session) -> Response:
        order_id = request.path_params["order_id"]
        view = await self.reads.order(order_id)
        if view.saga is None and not view.timeline and not view.problems:
            return self.render(
                request,
                "error.html",
                session,
                404,
                message=f"no order {order_id!r}: the saga has none and no message names it",
            )
        deadline = next_deadline(view.saga) if view.saga else None
        return self.render(
            request, "order.html", session, view=view, order=view.saga, deadline=deadline, now=self.reads.now()
        )

    async def identities(self, request: Request, session: Session) -> Response:
        status = request.query_params.get("status") or "submitted"
        return await self._listing(request, session, "identities.html", self.reads.identities, status)

    async def accounts(self, request: Request, session: Session) -> Response:
        status = request.query_params.get("status") or "locked"
        return await self._listing(request, session, "accounts.html", self.reads.accounts, status)

    async def _listing(
        self,
        request: Request,
        session: Session,
        template: str,
        read: Callable[[str], Awaitable[dict[str, Any]]],
        status: str,
    ) -> Response:
        try:
            body, problem = await read(status), None
        except Unavailable as error:
            body, problem = {}, str(error)
        return self.render(request, template, session, body=body, chosen=status, problem=problem)

    async def account(self, request: Request, session: Session) -> Response:
        account_id = request.path_params["account_id"]
        try:
            found, problem = await self.reads.account(account_id), None
        except Unavailable as error:
            found, problem = None, str(error)
        if found is None and problem is None:
            return self.render(request, "error.html", session, 404, message=f"no account {account_id!r}")
        return self.render(request, "account.html", session, account=found, account_id=account_id, problem=problem)

    async def dead_letters(self, request: Request, session: Session) -> Response:
        try:
            letters, problem = [dead_letter_json(letter) for letter in await self.reads.dead_letters()], None
        except Unavailable as error:
            letters, problem = [], str(error)
        return self.render(request, "dead_letters.html", session, letters=list(reversed(letters)), problem=problem)

    async def notifications(self, request: Request, session: Session) -> Response:
        try:
            rows, problem = await self.reads.undelivered(), None
        except Unavailable as error:
            rows, problem = [], str(error)
        return self.render(request, "notifications.html", session, rows=rows, problem=problem)

    async def audit(self, request: Request, session: Session) -> Response:
        return self.render(request, "audit.html", session, records=self.desk.history())

    # ------------------------------------------------------------------ acting

    async def act(self, request: Request, session: Session) -> Response:
        kind, subject = request.path_params["kind"], request.path_params["subject"]
        form = {k: str(v) for k, v in (await request.form()).items()}
        back = _local(form.get("back", "")) if form.get("back") else "/stuck"
        order = None
        if kind == "resolve":
            try:
                order = await self.reads.get("saga", "/order", order_id=subject)
            except Unavailable as error:
                return self.render(request, "error.html", session, 503, message=str(error))
        try:
            planned = plan(kind, subject, form, session.operator_id, order)
        except ActionRefused as refused:
            return self.render(request, "error.html", session, 400, message=f"nothing was sent: {refused}", back=back)
        if form.get("confirmed") != "yes":
            return self.render(request, "confirm.html", session, planned=planned, back=back)
        outcome = await self.desk.carry_out(planned, session.operator_id)
        return self.render(request, "outcome.html", session, planned=planned, outcome=outcome, back=back)


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another site's address)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/stuck"
    return target


def create_app(settings: ConsoleSettings, bootstrap_servers: str) -> Starlette:
    console = Console(settings, bootstrap_servers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.desk.stop()
            await console.reads.close()

    page = console.page
    routes = [
        Route("/health", lambda _request: PlainTextResponse("ok\n")),
        Route("/", lambda _request: RedirectResponse("/stuck", status_code=303)),
        Route("/signin", console.signin_page, methods=["GET"]),
        Route("/signin", console.signin, methods=["POST"]),
        Route("/signout", page(console.signout), methods=["POST"]),
        Route("/stuck", page(console.stuck)),
        Route("/orders", page(console.find_order)),
        Route("/orders/{order_id:path}", page(console.order)),
        Route("/identities", page(console.identities)),
        Route("/accounts", page(console.accounts)),
        Route("/accounts/{account_id:path}", page(console.account)),
        Route("/dead-letters", page(console.dead_letters)),
        Route("/notifications", page(console.notifications)),
        Route("/audit", page(console.audit)),
        Route("/act/{kind}/{subject:path}", page(console.act), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    return app


async def serve(
    settings: ConsoleSettings, bootstrap_servers: str, started: Callable[[str], None] | None = None
) -> None:
    """Serve the console until cancelled; ``started`` is told its address once it listens."""
    app = create_app(settings, bootstrap_servers)
    await serve_app(app, settings.host, settings.port, started, what="the console")
