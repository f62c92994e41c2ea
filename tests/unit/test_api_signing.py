from app.api.signing import canonical, go_encode, sign, verify


def test_cloudstack_test_vector():
    params = {"apiKey": "foo", "command": "listVirtualMachines", "listall": "true", "response": "json"}
    assert sign(params, "bar") == "B0d6hBsZTcFVCiioSxzwKA9Pke8="
    assert verify({**params, "signature": "B0d6hBsZTcFVCiioSxzwKA9Pke8="}, "bar", "B0d6hBsZTcFVCiioSxzwKA9Pke8=")


def test_sort_is_case_sensitive_and_signature_excluded():
    a = {"apiKey": "k", "Zeta": "1", "alpha": "2", "signature": "ignored"}
    b = {"apiKey": "k", "Zeta": "1", "alpha": "2"}
    assert sign(a, "s") == sign(b, "s")


def test_go_style_encoding_accepted():
    params = {"apiKey": "k", "command": "listUsers", "keyword": "a*b~c d"}
    sig = sign(params, "s", go_encode)
    assert verify(params, "s", sig)
    assert not verify(params, "other", sig)


def test_plus_space_and_unicode_are_encoded_as_javas_urlencoder():
    """URLEncoder.encode(v, "UTF-8").replace("+", "%20"), lower-cased: a `+` and a
    space never sign alike, and unicode is signed as its UTF-8 bytes."""
    params = {"apiKey": "k", "command": "listUsers", "keyword": "a+b c\u00fc\u2601"}
    assert canonical(params) == "apikey=k&command=listusers&keyword=a%2bb%20c%c3%bc%e2%98%81"
    assert canonical(params, go_encode) == canonical(params)  # they differ only on * and ~
    signed = sign(params, "s")
    for other in ("a b c\u00fc\u2601", "a+b+c\u00fc\u2601", "a%2Bb c\u00fc\u2601", "a+b cu\u2601"):
        assert not verify({**params, "keyword": other}, "s", signed), other
