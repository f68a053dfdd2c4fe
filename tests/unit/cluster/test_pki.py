"""The cluster's certificates and join tokens (pure: no network)."""

from __future__ import annotations

import datetime
import random

import pytest

from orch.cluster import pki
from orch.errors import InvalidArgument, PermissionDenied


@pytest.fixture(scope="module")
def ca():
    return pki.CA.create()


def node_cert(ca: pki.CA, node_id: str, role: str, **kw) -> bytes:
    return ca.sign_node_csr(pki.make_csr(pki.new_key(), "whatever-the-joiner-says"), node_id=node_id, role=role,
                            cluster_id="cluster1", **kw)


def test_a_node_certificate_names_node_role_and_cluster_whatever_the_csr_says(ca):
    cert = node_cert(ca, "node1", pki.WORKER)
    assert (pki.node_id_of(cert), pki.role_of(cert), pki.cluster_id_of(cert)) == ("node1", pki.WORKER, "cluster1")
    pki.verify_signed_by(cert, ca.cert)
    parsed = pki.load_cert(cert)
    assert parsed.public_key().curve.name == "secp256r1"
    assert parsed.not_valid_after_utc - parsed.not_valid_before_utc <= pki.NODE_VALIDITY + pki.BACKDATE


def test_ca_is_ecdsa_p256_and_a_ca(ca):
    assert ca.cert.public_key().curve.name == "secp256r1"
    assert pki.pin_ca(pki.new_join_token(ca.cert_pem).token, ca.cert_pem) == ca.cert
    again = pki.CA.load(ca.cert_pem, ca.key_pem)
    pki.verify_signed_by(node_cert(again, "n", pki.MANAGER), ca.cert)


def test_a_workers_certificate_where_a_managers_is_needed_is_refused(ca):
    worker = node_cert(ca, "w1", pki.WORKER)
    manager = node_cert(ca, "m1", pki.MANAGER)
    assert pki.require_role(manager, pki.MANAGER) == "m1"
    assert pki.require_role(worker, pki.WORKER) == "w1"
    with pytest.raises(PermissionDenied, match="^node w1 is a worker; this needs a manager's certificate$"):
        pki.require_role(worker, pki.MANAGER)


def test_a_certificate_without_a_node_role_is_refused(ca):
    other = ca.issue("etcd-member", unit="etcd-member")
    with pytest.raises(PermissionDenied, match="names no node role"):
        pki.role_of(other.cert_pem)
    with pytest.raises(InvalidArgument, match="unknown node role"):
        node_cert(ca, "x", "swarm-admin")


def test_another_cas_certificate_is_refused(ca):
    stranger = node_cert(pki.CA.create(), "m1", pki.MANAGER)
    with pytest.raises(PermissionDenied, match="not signed by this cluster's CA"):
        pki.verify_signed_by(stranger, ca.cert)


def test_an_expired_certificate_is_refused(ca):
    cert = node_cert(ca, "n1", pki.WORKER, validity=datetime.timedelta(hours=1))
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    with pytest.raises(PermissionDenied, match="not valid now"):
        pki.verify_signed_by(cert, ca.cert, now=later)


def test_renewal_falls_between_half_and_four_fifths_of_validity(ca):
    cert = pki.load_cert(node_cert(ca, "n1", pki.WORKER))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    for seed in range(20):
        at = pki.renew_at(cert, random.Random(seed))
        assert cert.not_valid_before_utc + life * 0.5 <= at <= cert.not_valid_before_utc + life * 0.8


def test_a_csr_must_be_signed_by_its_key_and_p256(ca):
    from cryptography.hazmat.primitives.asymmetric import ec
    with pytest.raises(InvalidArgument, match="ECDSA P-256"):
        ca.sign_node_csr(pki.make_csr(ec.generate_private_key(ec.SECP384R1())), node_id="n", role=pki.WORKER, cluster_id="c")
    with pytest.raises(InvalidArgument, match="not valid PEM"):
        ca.sign_node_csr(b"garbage", node_id="n", role=pki.WORKER, cluster_id="c")


def test_join_tokens_have_dockers_form(ca):
    token = pki.new_join_token(ca.cert_pem)
    prefix, one, digest, secret = token.token.split("-")
    assert (prefix, one) == ("SWMTKN", "1") and len(digest) == 50 and len(secret) == 25
    assert digest == pki.ca_digest(ca.cert_pem) and token.secret_hash == pki.secret_hash(secret)
    assert secret not in token.secret_hash


def test_tokens_grant_their_role_and_a_rotated_one_is_refused(ca):
    worker, manager = pki.new_join_token(ca.cert_pem), pki.new_join_token(ca.cert_pem)
    hashes = {"ca_cert_pem": ca.cert_pem, "worker_hash": worker.secret_hash, "manager_hash": manager.secret_hash}
    assert pki.role_for_token(worker.token, **hashes) == pki.WORKER
    assert pki.role_for_token(manager.token, **hashes) == pki.MANAGER
    rotated = pki.new_join_token(ca.cert_pem)  # `swarm join-token --rotate worker`
    hashes["worker_hash"] = rotated.secret_hash
    assert pki.role_for_token(rotated.token, **hashes) == pki.WORKER
    with pytest.raises(PermissionDenied, match="may have been rotated"):
        pki.role_for_token(worker.token, **hashes)
    assert pki.role_for_token(manager.token, **hashes) == pki.MANAGER  # the other role's token is untouched


def test_a_token_for_another_cluster_or_malformed_is_refused(ca):
    other = pki.CA.create()
    token = pki.new_join_token(other.cert_pem)
    with pytest.raises(PermissionDenied, match="another cluster"):
        pki.role_for_token(token.token, ca_cert_pem=ca.cert_pem, worker_hash=token.secret_hash, manager_hash="x")
    for bad in ("", "SWMTKN-1-abc", "SWMTKN-2-" + "0" * 50 + "-" + "0" * 25, "SWMTKN-1-" + "0" * 50 + "-" + "0" * 24,
                "SWMTKN-1-" + "A" * 50 + "-" + "0" * 25):
        with pytest.raises(InvalidArgument, match="invalid join token"):
            pki.parse_token(bad)


def test_the_pin_refuses_a_tampered_or_substituted_ca(ca):
    token = pki.new_join_token(ca.cert_pem).token
    assert pki.pin_ca(token, ca.cert_pem) == ca.cert
    with pytest.raises(PermissionDenied, match="does not match the join token's digest"):
        pki.pin_ca(token, pki.CA.create().cert_pem)  # a man in the middle's own CA
    tampered = ca.cert_pem.replace(b"\n", b"\n\n", 1)  # same certificate, different bytes: not what was pinned
    with pytest.raises(PermissionDenied, match="does not match"):
        pki.pin_ca(token, tampered)
    leaf = node_cert(ca, "n1", pki.MANAGER)
    leaf_token = f"SWMTKN-1-{pki.ca_digest(leaf)}-{token.rsplit('-', 1)[1]}"
    with pytest.raises(PermissionDenied, match="not a CA certificate"):
        pki.pin_ca(leaf_token, leaf)


def test_etcd_ca_is_separate_from_the_cluster_ca(ca):
    etcd_ca = pki.CA.create("orch-etcd-ca")
    member = etcd_ca.issue("m1", client=True, server=True, hosts=("10.0.0.1", "localhost"))
    pki.verify_signed_by(member.cert_pem, etcd_ca.cert)
    with pytest.raises(PermissionDenied):
        pki.verify_signed_by(member.cert_pem, ca.cert)
    with pytest.raises(PermissionDenied):
        pki.verify_signed_by(node_cert(ca, "w1", pki.WORKER), etcd_ca.cert)
