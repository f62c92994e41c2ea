// The upload page's second step (templates/images/_form.html): once the fields were
// accepted, #upload-status carries the signed upload URL in data- attributes; this
// POSTs the chosen file to it (raw body) with XMLHttpRequest, showing bytes sent,
// percent and speed, then Ready or the server's errortext.
(function () {
  "use strict";

  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  function fileInput() { return document.getElementById("upload-file"); }

  function upload(panel) {
    const file = fileInput() && fileInput().files[0];
    const bar = panel.querySelector(".upload-progress");
    const numbers = panel.querySelector(".upload-numbers");
    const result = panel.querySelector(".upload-result");
    const d = panel.dataset;
    const t0 = performance.now();

    function finish(ok, text, links) {
      panel.querySelector("h2").textContent = (ok ? "Uploaded " : "Upload of ") + d.name + (ok ? "" : " failed");
      panel.querySelector(".upload-expiry").hidden = true;
      result.hidden = false;
      result.className = "upload-result " + (ok ? "flash flash-success" : "flash flash-error");
      result.textContent = text + " ";
      links.forEach(function (l) {
        const a = document.createElement("a");
        a.href = l[0]; a.textContent = l[1]; a.className = "btn btn-sm";
        result.append(" ", a);
      });
    }
    if (!file) { finish(false, "No file was chosen.", [[d.uploadUrl, "Start over"]]); return; }

    const xhr = new XMLHttpRequest();
    xhr.open("POST", d.postUrl);
    xhr.setRequestHeader("X-signature", d.signature);
    xhr.setRequestHeader("X-metadata", d.metadata);
    xhr.setRequestHeader("X-expires", d.expires);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = function (e) {
      const total = e.lengthComputable ? e.total : file.size;
      const pct = total ? Math.floor(100 * e.loaded / total) : 0;
      const seconds = Math.max((performance.now() - t0) / 1000, 0.001);
      bar.value = pct;
      numbers.textContent = size(e.loaded) + " of " + size(total) + " · " + pct + "% · " +
        size(Math.round(e.loaded / seconds)) + "/s";
    };
    xhr.upload.onload = function () {
      bar.value = 100;
      numbers.textContent = size(file.size) + " of " + size(file.size) + " · 100% · checking the image…";
    };
    xhr.onload = function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON: use the status */ }
      if (xhr.status === 200) {
        numbers.textContent = size(file.size) + " of " + size(file.size) + " · 100%";
        finish(true, "Ready" + (body.size ? " (" + size(body.size) + ")." : "."),
               [[d.listUrl, "See it in the list"], [d.uploadUrl, "Upload another"]]);
      } else {
        finish(false, "Error: " + (body.errortext || "the server answered HTTP " + xhr.status),
               [[d.listUrl, "See the list"], [d.uploadUrl, "Start over"]]);
      }
    };
    xhr.onerror = function () {
      finish(false, "Error: the upload was interrupted.", [[d.listUrl, "See the list"], [d.uploadUrl, "Start over"]]);
    };
    xhr.send(file);
  }

  htmx.onLoad(function (elt) {
    elt.querySelectorAll("[data-needs-js]").forEach(function (b) { b.disabled = false; });
    const panel = elt.id === "upload-status" ? elt : elt.querySelector("#upload-status");
    if (panel && !panel.dataset.started) {
      panel.dataset.started = "1";
      panel.scrollIntoView({block: "nearest"});
      upload(panel);
    }
  });

  // The first step (the fields) only goes out once a file is chosen.
  document.addEventListener("htmx:beforeRequest", function (e) {
    const form = e.detail.elt;
    if (!form.matches || !form.matches("[data-upload-form]") || e.detail.requestConfig.verb !== "post") return;
    const input = fileInput(), error = document.getElementById("upload-file-error");
    const missing = !input.files.length;
    error.hidden = !missing;
    error.textContent = missing ? "Choose the file to upload" : "";
    input.closest(".field").classList.toggle("has-error", missing);
    if (missing) e.preventDefault();
  });
})();
