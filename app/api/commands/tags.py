"""Resource tags: createTags and deleteTags (async, as in CloudStack), listTags, and the
"tag" serializer (ResourceTagResponse). Every taggable object's own `tags` comes from
serializers.tags_for / tags_of."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import serializer, tag_dict
from app.services import tags

IDS = Param("resourceids", "list", "the resources (their ids, all of one type)", required=True, item_type="uuid")


@serializer("tag")
def tag(row) -> dict:
    t, acct = row
    return tag_dict(t, acct)


@command("createTags", "Creates resource tag(s)", is_async=True, params=[
    Param("tags", "map", "Map of tags (key/value pairs): tags[0].key=...&tags[0].value=...", required=True),
    Param("resourcetype", "string", "Type of the resource (UserVm, Volume, Template, ISO, Network, "
          "PublicIpAddress, FirewallRule, PortForwardingRule, SecurityGroup, ...)", required=True),
    IDS, Param("customer", "string", "identifies a client-specific tag")])
def create_tags(ctx, p):
    return tags.submit_create(ctx.user, p["resourceids"], p["resourcetype"], p["tags"], p.get("customer"))


@command("deleteTags", "Deleting resource tag(s)", is_async=True, params=[
    Param("tags", "map", "Delete tags matching key/value pairs (a key alone: any value; none: every tag)"),
    Param("resourcetype", "string", "Delete tag by resource type", required=True), IDS])
def delete_tags(ctx, p):
    return tags.submit_delete(ctx.user, p["resourceids"], p["resourcetype"], p.get("tags"))


@command("listTags", "List resource tag(s)", response="tag", list=True, params=[
    Param("resourcetype", "string", "list by resource type"), Param("resourceid", "string", "list by resource id"),
    Param("key", "string", "list by key"), Param("value", "string", "list by value"),
    Param("customer", "string", "list by customer name"), Param("isrecursive", "boolean", "ignored (one domain)")])
def list_tags(ctx, p):
    rows, total = tags.list_tags(ctx.user, resource_type=p.get("resourcetype"), resource_id=p.get("resourceid"),
                                 key=p.get("key"), value=p.get("value"), customer=p.get("customer"),
                                 account=p.get("account"), listall=p.get("listall", False), page=ctx.page)
    return tags.with_owners(rows), total
