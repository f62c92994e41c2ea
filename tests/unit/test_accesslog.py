"""The web processes' access log keeps secrets out (app/web/accesslog.py)."""
from __future__ import annotations

import datetime as dt
import logging

from gunicorn.config import Config

from app.web.accesslog import RedactingLogger, redact_query


def test_secret_values_are_masked_and_names_kept():
    q = ("command=addHost&url=http%3A%2F%2Fh1&username=root&password=s3cr%C3%A9t&apiKey=AK"
         "&signature=abc%2B&details%5B0%5D.fingerprint=aa%3Abb&externaldetails%5B1%5D.token=t"
         "&keyword=web&sessionkey=sk&userdata=I2Nsb3Vk")
    out = redact_query(q)
    assert "s3cr" not in out and "abc" not in out and "aa%3Abb" not in out and "=t&" not in out
    assert "sk" not in out.replace("sessionkey", "") and "I2Nsb3Vk" not in out
    for kept in ("command=addHost", "username=root", "apiKey=AK", "keyword=web", "url=http"):
        assert kept in out
    assert "password=***" in out and "details[0].fingerprint=***" in out


class _Resp:
    status = "200 OK"
    sent = 12
    headers: list = []


def test_the_logged_line_has_no_secret(caplog):
    cfg = Config()
    cfg.set("accesslog", "-")
    log = RedactingLogger(cfg)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/client/api?command=login&username=u&password=hunter2",
               "QUERY_STRING": "command=login&username=u&password=hunter2", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/client/api", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_REFERER": "http://127.0.0.1/console/?token=tok123", "HTTP_COOKIE": "session=c00kie"}
    atoms = log.atoms(_Resp(), [("Cookie", "session=c00kie")], environ, dt.timedelta(milliseconds=3))
    line = cfg.access_log_format % atoms
    assert "hunter2" not in line and "tok123" not in line
    assert "command=login" in line and "password=***" in line and "token=***" in line
    assert "c00kie" not in atoms["{cookie}i"] and "hunter2" not in atoms["{query_string}e"]
    logging.getLogger(__name__).debug(line)


def test_a_secret_name_is_masked_however_it_is_encoded_and_the_rest_is_kept_as_sent():
    q = "command=login&p%61ssword=hunter2&user+name=a%20b&details%5B0%5D.key=v&keyword=x%2By&flag"
    out = redact_query(q)
    assert "hunter2" not in out and "password=***" in out and "details[0].key=***" in out
    # Parameters that hold no secret are logged exactly as the client sent them.
    assert out.split("&")[0] == "command=login" and "user+name=a%20b" in out and "keyword=x%2By" in out
    assert out.endswith("&flag")
