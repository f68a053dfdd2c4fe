"""docker's JSON shapes of an image, computed from values."""

from orch.node.runtime.imageconfig import history_json, inspect_json, parse_time, rfc3339
from orch.node.runtime.images import Image

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def image(history, diff_ids=(D1, D2)):
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
              "config": {"Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}}, "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
              "history": history}
    return Image(id="sha256:" + "a" * 64, repo_tags=("app:1",), repo_digests=(), config=config, manifest_digest="sha256:" + "b" * 64,
                 layers=(), size=30)


def test_history_newest_first_with_empty_layers():
    im = image([
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2024-01-01T00:00:02Z", "created_by": "RUN make", "comment": "buildkit"},
    ])
    items = history_json(im, [10, 20])
    assert [(h["Id"], h["CreatedBy"], h["Size"], h["Tags"]) for h in items] == [
        (im.id, "RUN make", 20, ["app:1"]),
        ("<missing>", "ENV A=1", 0, None),
        ("<missing>", "ADD rootfs", 10, None),
    ]
    assert items[0]["Comment"] == "buildkit" and items[2]["Created"] == 1704067200


def test_history_of_an_image_without_history_is_one_row():
    items = history_json(image([]), [10, 20])
    assert len(items) == 1 and items[0]["Size"] == 30 and items[0]["Id"] == "sha256:" + "a" * 64


def test_inspect_config_keeps_dockers_keys_and_nulls():
    doc = inspect_json(image([]))
    assert doc["Config"]["ExposedPorts"] == {"80/tcp": {}} and "Healthcheck" not in doc["Config"]
    assert doc["Config"]["Volumes"] is None and doc["Config"]["OnBuild"] is None
    assert doc["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"} and doc["Comment"] == ""


def test_times_round_trip_with_nanoseconds():
    assert parse_time("2024-01-02T03:04:05.123456789Z") == 1704164645.123456
    assert rfc3339(1704164645.5) == "2024-01-02T03:04:05.5Z" and rfc3339(0) == "1970-01-01T00:00:00Z"
    assert parse_time("") == 0.0 and parse_time("garbage") == 0.0
