"""Write app/data/common-passwords.txt: passwords of 12+ characters that people
pick often, made from rules (words people use, with the digits, years and
symbols they add; keyboard walks; repeats). Written for Nubo, from no
third-party list. Run: python scripts/gen_common_passwords.py
"""
from __future__ import annotations

from itertools import product
from pathlib import Path

MIN = 12
WORDS = """password passw0rd p@ssword p@ssw0rd letmein welcome admin administrator root toor
qwerty qwertz azerty iloveyou princess sunshine football baseball basketball soccer hockey
dragon monkey master shadow superman batman spiderman starwars pokemon michael jennifer
jordan charlie thomas daniel jessica ashley michelle computer internet secret freedom
whatever trustno1 changeme default guest login access system server cloud cloudstack nubo
summer winter spring autumn monday friday january december love lovely angel flower
chocolate cookie banana orange purple yellow silver golden diamond mustang ferrari
killer hunter ranger tigger ginger pepper buster hello helloworld abc abcdef abcdefgh
mypassword yourpassword newpassword oldpassword password1 temp temporary test testing
qazwsx zxcvbn asdfgh asdfghjkl zxcvbnm qwertyuiop passwort motdepasse contrasena
openstack kubernetes docker ubuntu debian linux windows microsoft google apple samsung""".split()
SUFFIXES = ["", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "!", "!!", "1!",
            "123!", "@123", "#1", "01", "007", "69", "99", "00", "000", "111", "2000", "2020"]
SUFFIXES += [str(y) for y in range(1960, 2031)] + [f"{y}!" for y in range(2015, 2031)]
WALKS = ["qwertyuiop", "qwertyuiop[]", "1qaz2wsx3edc", "1qaz2wsx3edc4rfv", "qazwsxedcrfv", "zaq12wsxcde3",
         "1q2w3e4r5t6y", "1q2w3e4r5t6y7u8i", "q1w2e3r4t5y6", "asdfghjkl;'", "zxcvbnm,./", "!qaz@wsx#edc",
         "qwerty123456", "qwertyuiop123", "asdfghjkl123", "zxcvbnm12345", "1234qwerasdf", "qwerasdfzxcv",
         "abcdefghijkl", "abcdefghijklmnop", "abcd1234abcd", "abc123abc123", "a1b2c3d4e5f6"]


def words() -> set[str]:
    out: set[str] = set()
    for word, suffix in product(WORDS, SUFFIXES):
        out.add(word + suffix)
    for word, suffix in product(WORDS, ("", "1", "12", "123", "1234", "!", "2024", "2025", "2026")):
        out.add(word + word + suffix)
        out.add(suffix + word)
    for a, b in product(WORDS[:30], WORDS[:30]):
        out.add(a + b)
    for digits in ("0123456789", "1234567890", "9876543210", "0987654321"):
        for n in range(MIN, 21):
            out.add((digits * 3)[:n])
    out.update(WALKS)
    for walk in WALKS:
        out.update(walk + s for s in ("", "1", "!", "123"))
    return {w.lower() for w in out if len(w) >= MIN}


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "app" / "data" / "common-passwords.txt"
    entries = sorted(words())
    target.write_text("\n".join(entries) + "\n")
    print(f"{len(entries)} entries written to {target}")
