"""WTForms shared by pages. Every form carries Flask-WTF's CSRF token."""
from __future__ import annotations

from collections.abc import Mapping

from flask_wtf import FlaskForm
from wtforms import Form, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app.services.errors import ServiceError


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class EmptyForm(FlaskForm):
    """A CSRF-only form for action buttons (log out, start, stop, ...)."""


def attach_error(error: ServiceError, *forms: Form, aliases: Mapping[str, str] | None = None) -> None:
    """Show a service's refusal beside the field it names, in the first of `forms`
    that has it (API parameter names such as startip are mapped to form fields by
    `aliases`), or else at the top of the first form."""
    name = (aliases or {}).get(error.field or "", error.field)
    for form in forms:
        target = form._fields.get(name) if name else None
        if target is not None and name != "csrf_token":
            target.errors = [*target.errors, error.message]
            return
    forms[0].form_errors.append(error.message)
