"""The add-host form of a hypervisor type, built from the fields the type
declares (`HypervisorType.host_fields`), for every page that adds hosts: the
add-host page and the zone wizard's host step.

    form = hostform.form_for("KVM", formdata=request.form)   # or formdata=None, data={...}
    if form.validate():
        hosts.add_host(caller, cluster_uuid=..., url=form.url.data, fields=form.values())

Render it inside your own <form> with the `host_fields(form)` macro of
templates/_partials/host_fields.html: the fields, a "Test connection" button
(POST to infra.test_connection, which runs hosts.discover and never saves) and
the slot its answer goes into.

Validators come from the declaration: `required`, `choices`, `validate`. Secret
fields (passwords, keys) are never rendered back into the page.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from flask import url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, PasswordField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.hypervisors.base import HostField
from app.services import hypervisors as hv

BLANK = SelectChoice("", "—")


class SecretTextAreaField(TextAreaField):
    """A textarea (an SSH private key) that is never rendered back with its value."""

    def _value(self) -> str:
        return ""


class _Declared:
    """The type's own check of a value (HostField.validate): an error message or None."""

    def __init__(self, check: Callable[[str], str | None]):
        self.check = check

    def __call__(self, form, field) -> None:
        error = self.check((field.data or "").strip())
        if error:
            raise ValidationError(error)


class HostFieldsForm(FlaskForm):
    """Base of the generated forms. No CSRF field of its own: CSRFProtect checks every
    POST before any view runs, and the form is embedded in a page's own <form>."""

    class Meta:
        csrf = False

    type_name: ClassVar[str] = ""
    field_names: ClassVar[tuple[str, ...]] = ()

    def host_fields(self) -> list[Field]:
        """The type's fields, in the order it declares them."""
        return [self[name] for name in self.field_names]

    def values(self) -> dict[str, str]:
        """{field name: value} as hosts.add_host and hosts.discover take them ("url" included)."""
        out = {}
        for f in self.host_fields():
            if isinstance(f, BooleanField):
                out[f.short_name] = "true" if f.data else ""
            else:
                out[f.short_name] = (f.data or "").strip() if not isinstance(f, TextAreaField) else f.data or ""
        return out

    @property
    def dom_id(self) -> str:
        """id of the fields' container; the test result slot is `<dom_id>-result`."""
        return f"{self._prefix}host-fields"

    def test_url(self) -> str:
        """Where "Test connection" posts the fields (the form's prefix travels along)."""
        return url_for("infra.test_connection", type=self.type_name, prefix=self._prefix or None)

    def error_summary(self) -> str:
        return "; ".join(f"{f.label.text}: {e}" for f in self.host_fields() for e in f.errors)


def _field(f: HostField) -> Field:
    checks: list[Any] = [InputRequired(message=f"{f.label} is required") if f.required else Optional()]
    if f.validate:
        checks.append(_Declared(f.validate))
    kw: dict[str, Any] = dict(label=f.label, description=f.help, default=f.default or None)
    if f.kind == "checkbox":
        return BooleanField(validators=checks[:1], **{**kw, "default": f.default.lower() in ("1", "true", "yes")})
    if f.kind == "select":
        choices = [SelectChoice(c) for c in f.choices]
        return SelectField(choices=choices if f.required or f.default else [BLANK, *choices], validators=checks, **kw)
    if f.kind == "textarea":
        cls = SecretTextAreaField if f.secret else TextAreaField
        return cls(validators=[*checks, Length(max=16384)], render_kw={"rows": 6, "spellcheck": "false"}, **kw)
    secret = f.kind == "password" or f.secret
    # new-password: browsers must not fill in the admin's own saved login here
    return (PasswordField if secret else StringField)(
        validators=[*checks, Length(max=1024)], **kw,
        render_kw={"autocomplete": "new-password" if secret else "off", "spellcheck": "false"})


def form_class(type_name: str) -> type[HostFieldsForm]:
    """A form class with the fields `type_name` declares (display or internal name)."""
    t = hv.resolve(type_name)
    attrs: dict[str, Any] = {f.name: _field(f) for f in t.host_fields}
    taken = [name for name in attrs if hasattr(HostFieldsForm, name)]
    if taken:
        raise ValueError(f"{t.name} declares host fields named like form attributes: {', '.join(taken)}")
    attrs.update(type_name=t.name, field_names=tuple(f.name for f in t.host_fields))
    return type(f"{t.name}HostForm", (HostFieldsForm,), attrs)


def form_for(type_name: str, formdata=None, data: Mapping[str, Any] | None = None,
             prefix: str = "") -> HostFieldsForm:
    """The add-host form of a type, filled from `formdata` (request.form; None: not
    submitted) or else from `data` and the declared defaults. `prefix` namespaces the
    field names (e.g. "host-") when the page's own form has fields of the same name."""
    return form_class(type_name)(formdata=formdata, data=dict(data or {}), prefix=prefix)
