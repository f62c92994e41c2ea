"""Primary storage, image stores and capacity."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import capacity, catalog, storage, storage_maintenance


def _details(p) -> dict:
    out: dict = {}
    for entry in p.get("details", []):
        out.update(entry)
    return out


@command("createStoragePool", "Adds primary storage (nfs://, smb://, file:///)", role=ADMIN, response="storagepool",
         params=[Param("zoneid", "uuid", "the zone", required=True), Param("name", "string", "the pool's name", required=True),
                 Param("url", "string", "nfs://server/path, smb://server/share or file:///path", required=True),
                 Param("podid", "uuid", "the pod"), Param("clusterid", "uuid", "the cluster (cluster scope)"),
                 Param("scope", "string", "cluster (default) or zone"),
                 Param("hypervisor", "string", "the hypervisor a zone-wide pool serves"),
                 Param("details", "map", "SMB credentials: details[0].user=..&details[0].password=.."),
                 Param("tags", "list", "the tags for the storage pool"),
                 Param("capacityiops", "long", "IOPS CloudStack can provision from this storage pool")])
def create_storage_pool(ctx, p):
    return storage.create_storage_pool(ctx.user, zone_uuid=p["zoneid"], name=p["name"], url=p["url"],
                                       scope=p.get("scope", "cluster"), pod_uuid=p.get("podid"),
                                       cluster_uuid=p.get("clusterid"), hypervisor=p.get("hypervisor"),
                                       details=_details(p), tags=p.get("tags"), capacity_iops=p.get("capacityiops"))


@command("deleteStoragePool", "Removes an empty primary storage pool", role=ADMIN,
         params=[Param("id", "uuid", "the pool", required=True)])
def delete_storage_pool(ctx, p):
    storage.delete_storage_pool(ctx.user, p["id"])
    return {"success": True}


@command("listStoragePools", "Lists primary storage pools", role=ADMIN, response="storagepool", list=True,
         params=[Param("zoneid", "uuid", "the zone"), Param("clusterid", "uuid", "the cluster"),
                 Param("name", "string", "the pool's name"), Param("scope", "string", "HOST, CLUSTER or ZONE")])
def list_storage_pools(ctx, p):
    return storage.list_storage_pools(id=p.get("id"), zone_uuid=p.get("zoneid"), cluster_uuid=p.get("clusterid"),
                                      name=p.get("name"), keyword=p.get("keyword"), scope=p.get("scope"),
                                      page=ctx.page)


@command("addImageStore", "Adds secondary storage (NFS, SMB, or Local with file:///path)", role=ADMIN,
         response="imagestore", params=[
             Param("provider", "string", "NFS, SMB or Local", required=True),
             Param("url", "string", "nfs://server/path, smb://server/share or file:///path", required=True),
             Param("name", "string", "the store's name"), Param("zoneid", "uuid", "the zone"),
             Param("details", "map", "SMB credentials")])
def add_image_store(ctx, p):
    return storage.add_image_store(ctx.user, provider=p["provider"], url=p["url"], name=p.get("name"),
                                   zone_uuid=p.get("zoneid"), details=_details(p))


@command("deleteImageStore", "Removes an empty image store", role=ADMIN,
         params=[Param("id", "uuid", "the store", required=True)])
def delete_image_store(ctx, p):
    storage.delete_image_store(ctx.user, p["id"])
    return {"success": True}


@command("listImageStores", "Lists image stores", role=ADMIN, response="imagestore", list=True,
         params=[Param("zoneid", "uuid", "the zone"), Param("provider", "string", "NFS, SMB or Local"),
                 Param("name", "string", "the store's name")])
def list_image_stores(ctx, p):
    return storage.list_image_stores(id=p.get("id"), zone_uuid=p.get("zoneid"), provider=p.get("provider"),
                                     name=p.get("name"), keyword=p.get("keyword"), page=ctx.page)


@command("listCapacity", "Lists capacity per zone (0 memory, 1 CPU, 2 storage, 3 storage allocated)", role=ADMIN,
         response="capacity", list=True, params=[Param("zoneid", "uuid", "the zone"),
                                                 Param("type", "integer", "the capacity type")])
def list_capacity(ctx, p):
    rows = capacity.list_capacity(p.get("zoneid"), p.get("type"))
    return rows, len(rows)


@command("updateStoragePool", "Updates a storage pool.", role=ADMIN, response="storagepool", params=[
    Param("id", "uuid", "the Id of the storage pool", required=True),
    Param("name", "string", "Change the name of the storage pool"),
    Param("tags", "list", "comma-separated list of tags for the storage pool (empty: none)"),
    Param("capacitybytes", "long", "bytes CloudStack can provision from this storage pool"),
    Param("capacityiops", "long", "IOPS CloudStack can provision from this storage pool"),
    Param("enabled", "boolean", "false to disable the pool for allocation of new volumes, true to enable it back")])
def update_storage_pool(ctx, p):
    return storage.update_storage_pool(ctx.user, p["id"], name=p.get("name"), tags=p.get("tags"),
                                       capacity_bytes=p.get("capacitybytes"), capacity_iops=p.get("capacityiops"),
                                       enabled=p.get("enabled"))


@command("enableStorageMaintenance", "Puts storage pool into maintenance state", role=ADMIN, is_async=True,
         response="storagepool", params=[Param("id", "uuid", "Primary storage ID", required=True)])
def enable_storage_maintenance(ctx, p):
    return storage_maintenance.enable_maintenance(ctx.user, p["id"])


@command("cancelStorageMaintenance", "Cancels maintenance for primary storage", role=ADMIN, is_async=True,
         response="storagepool", params=[Param("id", "uuid", "the primary storage ID", required=True)])
def cancel_storage_maintenance(ctx, p):
    return storage_maintenance.cancel_maintenance(ctx.user, p["id"])


@command("listStorageProviders", "Lists storage providers.", role=ADMIN, response="dataStoreProvider", list=True,
         params=[Param("type", "string", "the type of storage provider: either primary or image", required=True)])
def list_storage_providers(ctx, p):
    rows = catalog.list_storage_providers(p["type"])
    return rows, len(rows)
