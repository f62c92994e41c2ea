from app.api.signing import go_encode, sign, verify


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
