"""The SSRF guard (switchyard.netguard) and the webhooks that use it: every IPv6 form of a private or loopback IPv4
address is refused, as are the IPv4 shorthand forms a resolver accepts; the admin API refuses such a webhook URL
with a 400 naming ``webhook_url``; and a notice goes to the address that was checked (Host, SNI and the certificate
name keep the URL's name), never to a second resolution of the name, and never along a redirect."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.ledger import WebhookSettings
from switchyard.governance.webhooks import WebhookNotifier
from switchyard.netguard import NonPublicTarget, UnsafeTarget, check_url, is_public, resolve_pinned
from tests.support.gateway import run_gateway
from tests.support.governance import Admin, gov_config
from tests.support.webhook_receiver import receiver

REFUSED = [
    "http://[2002:7f00:1::]:4250/",  # 6to4 of 127.0.0.1 (the example)
    "http://[2002:0a00:0001::]/",  # 6to4 of 10.0.0.1
    "http://[2002:c0a8:0101::1]/",  # 6to4 of 192.168.1.1
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",  # IPv4-mapped, in hex
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254 (cloud metadata)
    "http://[::127.0.0.1]/",  # IPv4-compatible (deprecated): refused whatever it embeds
    "http://[::8.8.8.8]/",
    "http://[64:ff9b::7f00:1]/",  # NAT64 well-known prefix, 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64, 10.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # NAT64 local-use prefix: refused outright
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo: refused outright
    "http://[fe80::1]/", "http://[fe80::1%25eth0]/", "http://[fc00::1]/", "http://[fd12:3456::1]/",
    "http://[fec0::1]/", "http://[::1]/", "http://[::]/", "http://[ff02::1]/",
    "http://0.0.0.0/", "http://127.0.0.1/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/", "http://224.0.0.1/", "http://240.0.0.1/",
    "http://2130706433/",  # 127.0.0.1 in decimal (getaddrinfo accepts it)
    "http://0x7f.1/", "http://127.1/", "http://0/", "http://127.0.0.1./",
    "http://0177.0.0.1/",  # octal: httpx refuses to parse it at all
    "http://localhost:8080/", "http://LOCALHOST./", "http://api.localhost/",
    "ftp://8.8.8.8/", "file:///etc/passwd", "http:///nohost",
]

ALLOWED = [
    "http://8.8.8.8/", "https://1.1.1.1:8443/hook?token=x", "http://[2606:4700::1111]/",
    "http://[2002:808:808::]/",  # 6to4 of a public address
    "http://[64:ff9b::808:808]/",  # NAT64 of a public address (how an IPv6-only network reaches 8.8.8.8)
    "http://134744072/",  # 8.8.8.8 in decimal
    "https://hooks.example.com/budget",  # a name: checked when a notice is sent
]


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_public_targets_pass(url: str) -> None:
    check_url(url)  # the classifier only: nothing is connected to


def test_the_classifier_judges_the_embedded_ipv4_address() -> None:
    for addr in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                 "192.0.2.1", "198.18.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "fec0::1",
                 "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1",
                 "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808", "::127.0.0.1", "2001::1", "224.0.0.1", "ff05::1",
                 "2001:db8::1"):
        assert not is_public(ipaddress.ip_address(addr)), addr
    for addr in ("1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
                 "64:ff9b::808:808"):
        assert is_public(ipaddress.ip_address(addr)), addr


def test_a_non_public_literal_passes_with_allow_private_but_a_bad_scheme_never_does() -> None:
    assert check_url("http://[2002:7f00:1::]:4250/", allow_private=True).port == 4250
    assert check_url("http://localhost/", allow_private=True).host == "localhost"
    with pytest.raises(UnsafeTarget) as e:
        check_url("gopher://localhost/", allow_private=True)
    assert not isinstance(e.value, NonPublicTarget)


# --- the admin API -------------------------------------------------------------------------------------------


def test_the_admin_api_refuses_a_non_public_webhook_url_naming_the_field(tmp_path: Path) -> None:
    with run_gateway(gov_config(f"sqlite:///{tmp_path}/ssrf.db")) as gw:
        admin = Admin(gw.url)
        org = admin.org()
        budget = {"scope": "org", "scope_id": org["id"], "max_usd": 1.0}
        for url in ("http://[2002:7f00:1::]:4250/", "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::a00:1]/",
                    "http://2130706433/", "http://169.254.169.254/", "http://localhost:9/"):
            r = admin.request("POST", "/admin/budgets", {**budget, "webhook_url": url})
            assert r.status_code == 400, (url, r.text)
            err = r.json()["error"]
            assert err["param"] == "webhook_url" and "non-public" in err["message"], err
            assert "ledger.webhooks.allow_private" in err["message"]
        created = admin.post("/admin/budgets", {**budget, "webhook_url": "https://hooks.example.com/b"})
        r = admin.request("PATCH", f"/admin/budgets/{created['id']}", {"webhook_url": "http://[fd00::1]/"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url", r.text
        assert admin.get(f"/admin/budgets/{created['id']}")["webhook_url"] == "https://hooks.example.com/b"
        admin.close()


def test_allow_private_lets_an_in_cluster_target_be_set(tmp_path: Path) -> None:
    cfg = gov_config(f"sqlite:///{tmp_path}/ssrf.db", ledger={"webhooks": {"allow_private": True}})
    with run_gateway(cfg) as gw:
        admin = Admin(gw.url)
        org = admin.org()
        b = admin.post("/admin/budgets", {"scope": "org", "scope_id": org["id"], "max_usd": 1.0,
                                          "webhook_url": "http://10.0.0.5:8080/hook"})
        assert b["webhook_url"] == "http://10.0.0.5:8080/hook"
        r = admin.request("POST", "/admin/budgets", {"scope": "org", "scope_id": org["id"], "max_usd": 1.0,
                                                     "webhook_url": "ftp://10.0.0.5/"})
        assert r.status_code == 400 and "allow_private" not in r.json()["error"]["message"]
        admin.close()


# --- resolve, then connect to what was checked ---------------------------------------------------------------


def fixed(answers: dict[str, Sequence[str]]) -> Any:
    """A resolver that knows only ``answers`` (so a name it answers for cannot be resolved by anything else)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return list(answers[host])

    return resolve


async def deliver(notifier: WebhookNotifier, url: str) -> None:
    notifier.notify(url, {"id": "evt_1", "type": "budget.threshold"})
    await asyncio.wait_for(notifier.drain(), 20)
    await notifier.aclose()


SETTINGS = WebhookSettings(allow_private=True, attempts=1, timeout=5)


async def test_a_notice_goes_to_the_checked_address_with_the_original_host() -> None:
    with receiver() as hooks:
        # hooks.test resolves nowhere but in this resolver: the request can only have gone to the pinned address
        n = WebhookNotifier(SETTINGS, resolver=fixed({"hooks.test": ["127.0.0.1"]}))
        await deliver(n, f"http://hooks.test:{hooks.port}/budget?k=1")
        assert n.sent == 1 and len(hooks.requests) == 1
        got = hooks.requests[0]
        assert got.headers["host"] == f"hooks.test:{hooks.port}" and got.path == "/budget?k=1"
        assert got.headers["x-switchyard-event"] == "budget.threshold"


async def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    with receiver() as hooks:
        n = WebhookNotifier(SETTINGS, resolver=fixed({"hooks.test": ["127.0.0.3", "127.0.0.1"]}))
        await deliver(n, f"http://hooks.test:{hooks.port}/")
        assert n.sent == 1 and hooks.requests[0].headers["host"] == f"hooks.test:{hooks.port}"


async def test_a_name_that_resolves_to_a_non_public_address_is_refused_when_sending() -> None:
    with receiver() as hooks:
        strict = WebhookSettings(allow_private=False, attempts=1)
        for answers in (["10.0.0.7"], ["93.184.216.34", "127.0.0.1"], ["2002:7f00:1::"], ["64:ff9b::7f00:1"]):
            n = WebhookNotifier(strict, resolver=fixed({"hooks.test": answers}))
            await deliver(n, f"http://hooks.test:{hooks.port}/")
            assert (n.refused, n.sent) == (1, 0), answers
        n = WebhookNotifier(strict)  # the system resolver: localhost is loopback
        await deliver(n, f"http://localhost:{hooks.port}/")
        assert (n.refused, n.sent) == (1, 0)
        assert hooks.requests == []


async def test_the_operators_own_url_is_trusted_but_a_budgets_is_not() -> None:
    with receiver() as hooks:
        own = f"http://hooks.test:{hooks.port}/operator"
        n = WebhookNotifier(WebhookSettings(url=own, allow_private=False, attempts=1),
                            resolver=fixed({"hooks.test": ["127.0.0.1"]}))
        n.notify(None, {"id": "evt_1"})  # a budget with no webhook_url of its own: the operator's URL
        n.notify(f"http://hooks.test:{hooks.port}/budget", {"id": "evt_2"})  # a budget's own URL
        await asyncio.wait_for(n.drain(), 20)
        await n.aclose()
        assert (n.sent, n.refused) == (1, 1) and [r.path for r in hooks.requests] == ["/operator"]


async def test_the_system_resolver_is_used_by_default() -> None:
    with pytest.raises(NonPublicTarget, match="non-public"):
        await resolve_pinned("http://localhost:9/hook", allow_private=False)
    pinned = await resolve_pinned("http://localhost:9/hook?x=1", allow_private=True)
    assert pinned.target.host == "localhost" and pinned.host_header == "localhost:9"
    assert {str(a) for a in pinned.addresses} <= {"127.0.0.1", "::1"}
    assert pinned.url_for(pinned.addresses[0]).endswith(":9/hook?x=1")
    with pytest.raises(UnsafeTarget, match="cannot resolve"):
        await resolve_pinned("http://hooks.invalid/", allow_private=True)


async def test_redirects_are_not_followed() -> None:
    with receiver() as elsewhere, receiver(answer=307, location=f"http://127.0.0.1:{elsewhere.port}/x") as hooks:
        n = WebhookNotifier(SETTINGS, resolver=fixed({"hooks.test": ["127.0.0.1"]}))
        await deliver(n, f"http://hooks.test:{hooks.port}/")
        assert len(hooks.requests) == 1 and elsewhere.requests == []


def self_signed(tmp: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / f"{host}.pem", tmp / f"{host}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_https_keeps_the_name_for_sni_and_the_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "hooks.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    with receiver(tls=server_tls) as hooks:
        n = WebhookNotifier(SETTINGS, resolver=fixed({"hooks.test": ["127.0.0.1"]}), verify=trust)
        await deliver(n, f"https://hooks.test:{hooks.port}/tls")
        assert n.sent == 1 and hooks.sni == ["hooks.test"]
        assert hooks.requests[0].headers["host"] == f"hooks.test:{hooks.port}"
        # the same address under another name: the certificate does not match, so nothing is sent
        n = WebhookNotifier(SETTINGS, resolver=fixed({"other.test": ["127.0.0.1"]}), verify=trust)
        await deliver(n, f"https://other.test:{hooks.port}/tls")
        assert (n.sent, n.failed) == (0, 1) and len(hooks.requests) == 1
