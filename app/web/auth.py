"""Login and logout."""
from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from app.extensions import login_manager
from app.models import User
from app.services import accounts, sessions
from app.web.forms import EmptyForm, LoginForm

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to continue."
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_uuid: str) -> User | None:
    user = sessions.load(session, user_uuid)
    if user is None:
        # Logged out, password changed, idle or too old, user gone: this cookie is done.
        session.clear()
    return user


def _home_for(user) -> str:
    return url_for("admin.dashboard") if user.is_admin else url_for("portal.my_vms")


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: never an open redirect, never a header split.
    Browsers drop tabs and line breaks from URLs and read "\\" as "/", so "/\\evil",
    "/\t/evil" and "//evil" all go off-site: any control character or backslash is refused."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/")
def index():
    if current_user.is_authenticated:
        return redirect(_home_for(current_user))
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_home_for(current_user))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.username.data, form.password.data)
        except accounts.LoginThrottled as e:
            # The same for known and unknown names: it tells nothing about who exists.
            form.form_errors.append(e.message)
            status = 429
        else:
            if user is None:
                form.form_errors.append("Wrong username or password, or the user is disabled.")
                status = 401
            else:
                session.clear()  # nothing from before the login carries over
                login_user(user)
                sessions.begin(session, user)
                return redirect(_safe_next(request.args.get("next")) or _home_for(user))
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    form = EmptyForm()
    if form.validate_on_submit():
        if current_user.is_authenticated:
            sessions.revoke(session, current_user)  # this session (and copies of its cookie) only
        logout_user()
        session.clear()
        flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
