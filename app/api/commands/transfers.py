"""Extract (download URLs) and volume upload commands (CloudStack names and fields)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.services.transfers import extracts, volume_uploads

MODE = Param("mode", "string", "the mode of extraction - HTTP_DOWNLOAD (FTP_UPLOAD is not supported)",
             required=True)
URL = Param("url", "string", "ignored: Nubo serves the file itself at the URL it answers", length=2048)


@command("extractTemplate", "Extracts a template: a URL to download it from (valid for "
         "extract.url.expiration.interval seconds)", is_async=True, response="template", params=[
             Param("id", "uuid", "the ID of the template", required=True), MODE,
             Param("zoneid", "uuid", "the ID of the zone where the template is located"), URL])
def extract_template(ctx, p):
    return extracts.submit_template(ctx.user, p["id"], zone_uuid=p.get("zoneid"), mode=p.get("mode"))


@command("extractIso", "Extracts an ISO: a URL to download it from", is_async=True, response="iso", params=[
    Param("id", "uuid", "the ID of the ISO file", required=True), MODE,
    Param("zoneid", "uuid", "the ID of the zone where the ISO is originally located"), URL])
def extract_iso(ctx, p):
    return extracts.submit_template(ctx.user, p["id"], zone_uuid=p.get("zoneid"), mode=p.get("mode"), is_iso=True)


@command("extractVolume", "Extracts a volume: copies it to secondary storage and answers a URL to download it "
         "from", is_async=True, response="volume", params=[
             Param("id", "uuid", "the ID of the volume", required=True), MODE,
             Param("zoneid", "uuid", "the ID of the zone where the volume is located", required=True), URL])
def extract_volume(ctx, p):
    return extracts.submit_volume(ctx.user, p["id"], zone_uuid=p.get("zoneid"), mode=p.get("mode"))


OWNER = [Param("account", "string", "an optional accountName. Must be used with domainId."),
         Param("domainid", "uuid", "an optional domainId. If the account parameter is used, domainId must also "
               "be used."),
         Param("projectid", "uuid", "Upload volume for the project")]


@command("uploadVolume", "Uploads a data disk: Nubo fetches it from the URL into secondary storage; the first "
         "attach moves it into primary storage", is_async=True, response="volume", async_returns_id=True, params=[
             Param("format", "string", "the format for the volume. Possible values include QCOW2, OVA, and VHD.",
                   required=True),
             Param("name", "string", "the name of the volume", required=True),
             Param("url", "string", "the URL of where the volume is hosted. Possible URL include http:// and "
                   "https://", required=True, length=2048),
             Param("zoneid", "uuid", "the ID of the zone the volume is to be hosted on", required=True),
             Param("checksum", "string", "the checksum value of this volume ({SHA-256}..., or a plain MD5)"),
             Param("diskofferingid", "uuid", "the ID of the disk offering. This must be a custom sized offering "
                   "since during uploadVolume volumes size is unknown."),
             Param("imagestoreuuid", "string", "ignored: the zone's image store is used"), *OWNER])
def upload_volume(ctx, p):
    return volume_uploads.submit_upload(ctx.user, url=p["url"], name=p["name"], format=p["format"],
                                        zone_uuid=p["zoneid"], checksum=p.get("checksum"),
                                        disk_offering_uuid=p.get("diskofferingid"), account=p.get("account"),
                                        domainid=p.get("domainid"))


@command("getUploadParamsForVolume", "Upload a data disk to the cloudstack cloud: returns a signed URL to POST "
         "the file to", response="getuploadparams", params=[
             Param("format", "string", "the format for the volume/template/iso. Possible values include QCOW2, "
                   "OVA, and VHD.", required=True),
             Param("name", "string", "the name of the volume/template/iso", required=True),
             Param("zoneid", "uuid", "the ID of the zone the volume/template/iso is to be hosted on", required=True),
             Param("checksum", "string", "the checksum value of this volume/template/iso"),
             Param("diskofferingid", "uuid", "the ID of the disk offering. This must be a custom sized offering "
                   "since during upload of volume/template size is unknown."),
             Param("imagestoreuuid", "string", "ignored: the zone's image store is used"), *OWNER])
def get_upload_params_for_volume(ctx, p):
    return volume_uploads.upload_params(ctx.user, name=p["name"], format=p["format"], zone_uuid=p["zoneid"],
                                        checksum=p.get("checksum"), disk_offering_uuid=p.get("diskofferingid"),
                                        account=p.get("account"), domainid=p.get("domainid"))
