"""The small infrastructure forms outside the zone wizard: add pod, add cluster,
add primary storage, add secondary storage, and the zone → pod → cluster choice
of the add-host page.

Selects whose choice changes the rest of the form (zone, scope, protocol) ask
for the form again with hx-get (passwords left out), and without JavaScript an
"Update form" button does the same GET. Errors of the services name API
parameters (startip, clustername, url, ...): `aliases` maps them to fields.
"""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from flask import request
from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, StopValidation

from app.models import Cluster
from app.services import hypervisors as hv
from app.services import zones as zones_service
from app.services.errors import ServiceError


class When:
    """The field is shown, and required, only while field `other` has one of `values`."""

    def __init__(self, other: str, *values: str):
        self.other, self.values = other, values

    def applies(self, form) -> bool:
        return form[self.other].data in self.values

    def __call__(self, form, field) -> None:
        if not self.applies(form):
            field.errors[:] = []
            raise StopValidation()  # hidden: ignore whatever it holds
        if not (field.data or "").strip():
            raise StopValidation(f"{field.label.text} is required")


class InfraForm(FlaskForm):
    title: ClassVar[str] = ""
    submit: ClassVar[str] = "Save"
    intro: ClassVar[str] = ""
    dom_id: ClassVar[str] = "infra-form"
    refresh: ClassVar[tuple[str, ...]] = ()  # selects that re-render the form when changed
    push_url: ClassVar[bool] = False  # ...and put the new choice in the address bar
    layout: ClassVar[tuple[str, ...]] = ()  # field order, where it differs from the declaration order
    aliases: ClassVar[dict[str, str]] = {}  # API parameter → field

    def setup(self, action: str) -> InfraForm:
        """Fill the choices (which may depend on other fields) and wire the refreshing selects."""
        self.action = action
        self.prepare()
        for name in self.refresh:
            self[name].render_kw = {
                "hx-get": action, "hx-trigger": "change", "hx-target": f"#{self.dom_id}", "hx-swap": "outerHTML",
                "hx-include": "closest form", "hx-params": "not password,csrf_token",
                **({"hx-push-url": "true"} if self.push_url else {})}
        return self

    def prepare(self) -> None:
        """Subclasses fill their select choices here."""

    def offer(self, field: SelectField, options: list[tuple[str, str]], blank: str | None = None) -> None:
        """Offer `options` in a select. A value that is not offered (another zone's pod
        after the zone changed) is dropped; while the form is being filled in (GET), a
        single option is chosen for the admin."""
        field.choices = choices(([("", blank)] if blank is not None else []) + options)
        if field.data not in {value for value, _ in options}:
            field.data = options[0][0] if len(options) == 1 and request.method == "GET" else ""

    def shown(self, field: Field) -> bool:
        return field.name != "csrf_token" and all(v.applies(self) for v in field.validators if isinstance(v, When))

    def visible_fields(self) -> list[Field]:
        fields = [self[name] for name in self.layout] if self.layout else list(self)
        return [f for f in fields if self.shown(f)]


def choices(options: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in options]


def zone_options() -> list[tuple[str, str]]:
    return [(z.uuid, z.name) for z in zones_service.list_zones(sort="name")[0]]


def _in_zone(lister, zone_uuid: str | None, **kw) -> list:
    """Rows of a list function in one zone; none when no (or an unknown) zone is chosen."""
    if not zone_uuid:
        return []
    try:
        return lister(zone_uuid=zone_uuid, sort="name", **kw)[0]
    except ServiceError:
        return []


def cluster_label(c: Cluster) -> str:
    return f"{c.pod.name} / {c.name} ({hv.display_name(c.hypervisor_type)})"


def hypervisor_options() -> list[tuple[str, str]]:
    """The types hypervisor.list offers, by display name."""
    return [(t.name, hv.display_name(t.name)) for t in hv.enabled_types()]


class PodForm(InfraForm):
    title = submit = "Add pod"
    intro = ("A pod is a rack: its hosts share a management subnet. The IP range is reserved "
             "for Nubo's own use on that subnet.")
    aliases = {"zoneid": "zone", "startip": "start_ip", "endip": "end_ip"}
    zone = SelectField("Zone", validators=[DataRequired()])
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    gateway = StringField("Gateway", validators=[DataRequired()], description="e.g. 192.168.10.1")
    netmask = StringField("Netmask", default="255.255.255.0", validators=[DataRequired()])
    start_ip = StringField("Start IP", validators=[DataRequired()])
    end_ip = StringField("End IP", validators=[Optional()], description="empty: only the start IP")

    def prepare(self) -> None:
        self.offer(self.zone, zone_options(), "Choose a zone")


class ClusterForm(InfraForm):
    title = submit = "Add cluster"
    intro = "A cluster holds hosts of one hypervisor type; Hyper-V clusters go only in pure Hyper-V zones."
    refresh = ("zone",)
    aliases = {"zoneid": "zone", "podid": "pod", "clustername": "name"}
    zone = SelectField("Zone", validators=[DataRequired()])
    pod = SelectField("Pod", validators=[DataRequired()])
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    hypervisor = SelectField("Hypervisor", validators=[DataRequired()])

    def prepare(self) -> None:
        self.offer(self.zone, zone_options(), "Choose a zone")
        self.offer(self.pod, [(p.uuid, p.name) for p in _in_zone(zones_service.list_pods, self.zone.data)],
                   "Choose a pod")
        self.offer(self.hypervisor, hypervisor_options(), "Choose a hypervisor")


class StorageUrlForm(InfraForm):
    """The fields a storage URL is built from: nfs://server/path, smb://server/share
    (credentials apart) or file:///path."""
    protocols: ClassVar[list[tuple[str, str]]] = []
    refresh = ("zone", "protocol")
    protocol = SelectField("Protocol")
    server = StringField("Server", validators=[When("protocol", "nfs", "smb"), Length(max=255)])
    path = StringField("Path", validators=[DataRequired(), Length(max=1000)])
    username = StringField("User", validators=[When("protocol", "smb"), Length(max=255)],
                           render_kw={"autocomplete": "off"})
    # new-password: browsers must not fill in the admin's own saved login here
    password = PasswordField("Password", validators=[When("protocol", "smb"), Length(max=255)],
                             render_kw={"autocomplete": "new-password"})

    def prepare(self) -> None:
        self.protocol.choices = choices(self.protocols)
        if self.protocol.data not in dict(self.protocols):
            self.protocol.data = self.protocols[0][0]
        self.path.label.text, self.path.description = {
            "nfs": ("Path", "the exported directory, e.g. /export/primary"),
            "smb": ("Share", "the share name, e.g. nubo-primary"),
        }.get(self.protocol.data, ("Directory", "an absolute path, e.g. /mnt/primary"))

    def validate_server(self, field: Field) -> None:
        # "filer/export" in Server with a Path too would make one URL of both, silently.
        if self.protocol.data in ("nfs", "smb") and any(c in (field.data or "").strip() for c in "/\\ "):
            raise StopValidation("A server is a host name or address, without a path")

    def validate_path(self, field: Field) -> None:
        # An NFS export is an absolute path on the server: "export/primary" is refused, not
        # silently made "/export/primary" (which may not be what the admin meant).
        if self.protocol.data in ("local", "nfs") and not field.data.strip().startswith("/"):
            raise StopValidation("Give an absolute path (starting with /)")

    def url(self) -> str:
        path = quote(self.path.data.strip())
        if self.protocol.data == "nfs":
            return f"nfs://{self.server.data.strip()}/{path.lstrip('/')}"
        if self.protocol.data == "smb":
            return f"smb://{self.server.data.strip()}/{path.strip('/')}"
        return f"file://{path}"

    def details(self) -> dict[str, str]:
        """SMB credentials, as the storage services take them."""
        if self.protocol.data != "smb":
            return {}
        return {"user": self.username.data.strip(), "password": self.password.data}


class PrimaryStorageForm(StorageUrlForm):
    title = submit = "Add primary storage"
    intro = ("Primary storage holds the VMs' disks. A cluster pool serves one cluster; a zone-wide "
             "pool serves every host of one hypervisor type in the zone.")
    protocols = [("nfs", "NFS"), ("smb", "SMB/CIFS"), ("local", "Shared mount point (directory)")]
    refresh = ("zone", "scope", "protocol")
    aliases = {"zoneid": "zone", "clusterid": "cluster", "url": "protocol"}
    zone = SelectField("Zone", validators=[DataRequired()])
    scope = SelectField("Scope", choices=choices([("cluster", "Cluster"), ("zone", "Zone-wide")]), default="cluster")
    cluster = SelectField("Cluster", validators=[When("scope", "cluster")])
    hypervisor = SelectField("Hypervisor", validators=[When("scope", "zone")])
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    layout = ("zone", "scope", "cluster", "hypervisor", "name", "protocol", "server", "path", "username", "password")

    def prepare(self) -> None:
        super().prepare()
        self.offer(self.zone, zone_options(), "Choose a zone")
        self.offer(self.cluster, [(c.uuid, cluster_label(c)) for c in
                                  _in_zone(zones_service.list_clusters, self.zone.data)], "Choose a cluster")
        self.offer(self.hypervisor, [(value, label) for value, label in hypervisor_options()
                                     if hv.resolve(value).capabilities.storage_kinds], "Choose a hypervisor")


class SecondaryStorageForm(StorageUrlForm):
    title = submit = "Add secondary storage"
    intro = "Secondary storage (an image store) holds templates, ISOs and snapshots."
    protocols = [("nfs", "NFS"), ("smb", "SMB/CIFS"), ("local", "Local directory on the management server")]
    refresh = ("protocol",)
    aliases = {"zoneid": "zone", "provider": "protocol", "url": "protocol"}
    zone = SelectField("Zone", validators=[Optional()])
    name = StringField("Name", validators=[Optional(), Length(max=255)], description="empty: the URL")
    layout = ("zone", "name", "protocol", "server", "path", "username", "password")

    def prepare(self) -> None:
        super().prepare()
        self.offer(self.zone, zone_options(), "Every zone (region-wide)")

    @property
    def provider(self) -> str:
        return {"nfs": "NFS", "smb": "SMB"}.get(self.protocol.data, "Local")


class HostLocationForm(InfraForm):
    """Zone → pod → cluster of the add-host page: a GET form (the choice is in the URL)."""

    class Meta:
        csrf = False

    dom_id = "add-host"
    refresh = ("zone", "pod", "cluster")
    push_url = True
    aliases = {"zoneid": "zone", "podid": "pod", "clusterid": "cluster", "hypervisor": "cluster"}
    zone = SelectField("Zone", validators=[DataRequired()])
    pod = SelectField("Pod", validators=[DataRequired()])
    cluster = SelectField("Cluster", validators=[DataRequired()])

    def prepare(self) -> None:
        self.offer(self.zone, zone_options(), "Choose a zone")
        self.offer(self.pod, [(p.uuid, p.name) for p in _in_zone(zones_service.list_pods, self.zone.data)],
                   "Choose a pod")
        clusters = _in_zone(zones_service.list_clusters, self.zone.data, pod_uuid=self.pod.data) \
            if self.pod.data else []
        self.offer(self.cluster, [(c.uuid, f"{c.name} ({hv.display_name(c.hypervisor_type)})") for c in clusters],
                   "Choose a cluster")
        self.chosen: Cluster | None = next((c for c in clusters if c.uuid == self.cluster.data), None)
