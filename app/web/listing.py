"""One helper for every admin list: search box, select filters, whitelisted sort
and page/pagesize, all from the query string so any state of a list is a URL.

A view builds a Listing, and render_list answers with the page or, for an HTMX
request (search box, sort header, pager), with the partial the page includes.
Templates: _partials/list.html (filter bar, sort headers, pager, section).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from flask import render_template, request, url_for

from app.services.errors import ServiceError

DEFAULT_PAGESIZE = 25
MAX_PAGESIZE = 500


@dataclass(frozen=True)
class FilterSelect:
    """A select filter of the filter bar: query argument, label and (value, text) options."""
    name: str
    label: str
    options: Sequence[tuple[str, str]]


@dataclass
class Listing:
    endpoint: str
    target: str  # id of the element the list partial renders (the HTMX target)
    table: str  # macro of infra/tables.html that renders the rows
    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = ""
    default_sort: str = "name"
    page: int = 1
    pagesize: int = DEFAULT_PAGESIZE
    rows: list = field(default_factory=list)
    total: int = 0
    error: str | None = None

    def url(self, **changes) -> str:
        """This list's URL with some arguments changed (None or "" drops one)."""
        args = {"q": self.q, **self.filters, "sort": self.sort, "pagesize": self.custom_pagesize, "page": self.page}
        args.update(changes)
        defaults = {"page": 1, "sort": self.default_sort}  # left out: the URL stays short
        return url_for(self.endpoint, **{k: v for k, v in args.items() if v not in (None, "", defaults.get(k))})

    def sort_url(self, key: str) -> str:
        """Sort by `key`; a second click on the current key reverses it. Back to page 1."""
        return self.url(sort=f"-{key}" if self.sort == key else key, page=None)

    def sort_state(self, key: str) -> str | None:
        """aria-sort of a column header."""
        if self.sort == key:
            return "ascending"
        return "descending" if self.sort == f"-{key}" else None

    @property
    def custom_pagesize(self) -> int | None:
        """The page size where it is not the default (kept in the filter form)."""
        return self.pagesize if self.pagesize != DEFAULT_PAGESIZE else None

    @property
    def filtered(self) -> bool:
        return bool(self.q or any(self.filters.values()))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.pagesize + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def prev_url(self) -> str | None:
        return self.url(page=self.page - 1) if self.page > 1 else None

    @property
    def next_url(self) -> str | None:
        return self.url(page=self.page + 1) if self.page * self.pagesize < self.total else None


def wants_fragment() -> bool:
    """An HTMX request for a page's fragment. Not when htmx restores a pushed URL
    missing from its history cache: that one needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


def listing(endpoint: str, table: str, fetch: Callable[..., tuple[list, int]], *, sorts: Collection[str],
            default_sort: str = "name", filters: Mapping[str, str] | None = None) -> Listing:
    """Read the list's state from the query string and fetch its page.

    fetch(keyword=, sort=, page=(number, size), **service_args) is a service's
    list function; `filters` maps query arguments to its keyword arguments
    ({"zone": "zone_uuid"}). A refusal of the service (an unknown zone id in the
    URL) shows as the list's error, with no rows."""
    args = request.args
    sort = args.get("sort", default_sort)
    lst = Listing(endpoint=endpoint, target=f"{table}-list", table=table, q=args.get("q", "").strip(),
                  filters={name: args.get(name, "").strip() for name in filters or {}},
                  sort=sort if sort.lstrip("-") in sorts else default_sort, default_sort=default_sort,
                  page=_int(args.get("page"), 1, 1, 10**6), pagesize=_int(args.get("pagesize"), DEFAULT_PAGESIZE, 1,
                                                                           MAX_PAGESIZE))
    kwargs = {service_arg: lst.filters[name] or None for name, service_arg in (filters or {}).items()}
    try:
        lst.rows, lst.total = fetch(keyword=lst.q or None, sort=lst.sort, page=(lst.page, lst.pagesize), **kwargs)
    except ServiceError as e:
        lst.error = e.message
    return lst


def render_list(lst: Listing, title: str, selects: Callable[[], list[FilterSelect]] = list,
                template: str = "infra/list.html", **context):
    """The whole page, or only the list partial for an HTMX request. The filter
    bar's options are only built for the page (the partial does not show them)."""
    if wants_fragment():
        # The address bar gets the list's own URL, without the filter form's empty fields.
        return render_template("infra/_list.html", lst=lst, **context), {"HX-Push-Url": lst.url()}
    return render_template(template, lst=lst, title=title, selects=selects(), **context)
