"""docker-archive and OCI layout: round trips, archives as other tools write them, corrupt archives."""

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from orch.errors import InvalidArgument, NotFound
from orch.node.runtime.images import ImageStore

from .conftest import entry, tar_bytes

pytestmark = pytest.mark.privileged


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def two_layer_image(store, tmp_path):
    l1 = tar_bytes(entry("bin/sh", data=b"#!", mode=0o755), entry("etc/motd", data=b"one"))
    l2 = tar_bytes(entry("etc/motd", data=b"two"), entry("etc/.wh.gone"))
    (tmp_path / "l1.tar").write_bytes(l1)
    base = store.import_rootfs(tmp_path / "l1.tar", "base:1", {"Cmd": ["sh"]})
    d2 = store.content.write_bytes(gzip.compress(l2, mtime=0))
    cfg = dict(base.config, rootfs={"type": "layers", "diff_ids": base.diff_ids + [sha(l2)]})
    image, _ = store.add_image(json.dumps(cfg).encode(), [(base.layers[0]["digest"], base.layers[0]["mediaType"]), (d2, "application/vnd.oci.image.layer.v1.tar+gzip")], ["app:2"])
    return image


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_then_load_into_a_fresh_store_gives_the_same_image(tmp_path, fmt):
    src = ImageStore(tmp_path / "a")
    image = two_layer_image(src, tmp_path)
    out = tmp_path / f"images-{fmt}.tar"
    src.save(["app:2", "base:1"], out, fmt)
    again = tmp_path / f"again-{fmt}.tar"
    src.save(["app:2", "base:1"], again, fmt)
    assert out.read_bytes() == again.read_bytes()  # reproducible archives

    dst = ImageStore(tmp_path / "b")
    assert dst.load(out) == ["Loaded image: app:2", "Loaded image: base:1"]
    loaded = dst.resolve("app:2")
    assert loaded.id == image.id and loaded.diff_ids == image.diff_ids and loaded.config == image.config
    assert dst.resolve("base:1").diff_ids == image.diff_ids[:1]
    assert dst.load(out) == ["Loaded image: app:2", "Loaded image: base:1"]  # loading twice is harmless


def test_docker_archive_layout_and_uncompressed_layers(tmp_path):
    src = ImageStore(tmp_path / "a")
    image = two_layer_image(src, tmp_path)
    src.save(["app:2"], tmp_path / "s.tar")
    with tarfile.open(tmp_path / "s.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest == [{"Config": f"{image.id[7:]}.json", "RepoTags": ["app:2"], "Layers": [f"{d[7:]}/layer.tar" for d in image.diff_ids]}]
        for d in image.diff_ids:  # docker save writes uncompressed layers: their sha256 is the diff ID
            assert sha(tar.extractfile(f"{d[7:]}/layer.tar").read()) == d
        assert json.load(tar.extractfile("repositories")) == {"app": {"2": image.diff_ids[-1][7:]}}


def test_oci_layout_names_images_as_docker_does(tmp_path):
    src = ImageStore(tmp_path / "a")
    image = two_layer_image(src, tmp_path)
    src.save(["app:2"], tmp_path / "o.tar", "oci")
    with tarfile.open(tmp_path / "o.tar") as tar:
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        index = json.load(tar.extractfile("index.json"))
        [desc] = index["manifests"]
        assert desc["digest"] == image.manifest_digest
        assert desc["annotations"] == {"io.containerd.image.name": "docker.io/library/app:2", "org.opencontainers.image.ref.name": "2"}
        manifest = json.load(tar.extractfile(f"blobs/sha256/{desc['digest'][7:]}"))
        assert manifest["config"]["digest"] == image.id
        assert [l["mediaType"] for l in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip"]


def docker_style_archive(tmp_path, *, gz: bool, tags=("hello:world",)):
    """An archive laid out as `docker save` (before 25) and `podman save` write it."""
    layer = tar_bytes(entry("hello", data=b"hi", mode=0o755))
    diff = sha(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}, "created": "2023-05-01T10:00:00.123456789Z"}).encode()
    blob = gzip.compress(layer) if gz else layer
    files = {
        f"{sha(config)[7:]}.json": config,
        "abc/layer.tar": blob,
        "abc/VERSION": b"1.0",
        "manifest.json": json.dumps([{"Config": f"{sha(config)[7:]}.json", "RepoTags": list(tags), "Layers": ["abc/layer.tar"]}]).encode(),
    }
    return write_tar(tmp_path / f"docker-{gz}.tar", files), sha(config), diff


@pytest.mark.parametrize("gz", [False, True])
def test_load_a_docker_style_archive(store, tmp_path, gz):
    path, image_id, diff = docker_style_archive(tmp_path, gz=gz)
    assert store.load(path) == ["Loaded image: hello:world"]
    image = store.resolve("hello:world")
    assert image.id == image_id and image.diff_ids == [diff]
    assert image.created == "2023-05-01T10:00:00.123456789Z"


def test_load_untagged_prints_the_id(store, tmp_path):
    path, image_id, _ = docker_style_archive(tmp_path, gz=False, tags=())
    assert store.load(path) == [f"Loaded image ID: {image_id}"]


def test_load_a_gzip_compressed_archive(store, tmp_path):
    path, image_id, _ = docker_style_archive(tmp_path, gz=False)
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(path.read_bytes()))
    assert store.load(tmp_path / "x.tar.gz") == ["Loaded image: hello:world"]


def oci_layout_dir(tmp_path, *, platforms=("linux/amd64",), ref_name="latest"):
    """An OCI layout directory with a nested image index, as skopeo and buildkit write them."""
    root = tmp_path / "layout"
    (root / "blobs/sha256").mkdir(parents=True)

    def blob(data: bytes) -> dict:
        (root / "blobs/sha256" / sha(data)[7:]).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    manifests = []
    for plat in platforms:
        os_, arch = plat.split("/")
        layer = gzip.compress(tar_bytes(entry("arch", data=arch.encode())))
        config = json.dumps({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": [sha(gzip.decompress(layer))]}, "config": {}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layer)}]}).encode()
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest), "platform": {"os": os_, "architecture": arch}})
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **blob(nested),
                                                "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def test_load_an_oci_layout_directory_picks_linux_amd64(store, tmp_path):
    root = oci_layout_dir(tmp_path, platforms=("linux/arm64", "linux/amd64"), ref_name="example.com/multi:v1")
    assert store.load(root) == ["Loaded image: example.com/multi:v1"]
    assert store.resolve("example.com/multi:v1").config["architecture"] == "amd64"


def test_an_oci_ref_name_that_is_only_a_tag_loads_untagged(store, tmp_path):
    lines = store.load(oci_layout_dir(tmp_path))
    assert lines[0].startswith("Loaded image ID: sha256:") and store.list()[0].repo_tags == ()


def test_a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_kept(store, tmp_path):
    root = oci_layout_dir(tmp_path, ref_name="example.com/x:1")
    for p in (root / "blobs/sha256").iterdir():
        if p.read_bytes()[:2] == b"\x1f\x8b":
            p.write_bytes(gzip.compress(tar_bytes(entry("evil", data=b"x"))))
    with pytest.raises(InvalidArgument, match="content digest mismatch"):
        store.load(root)
    assert store.list() == [] and store.snapshots.list_committed() == []


def test_a_layer_whose_content_disagrees_with_the_config_is_refused(store, tmp_path):
    layer = tar_bytes(entry("a", data=b"a"))
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(b"something else")]}}).encode()
    path = write_tar(tmp_path / "bad.tar", {"c.json": config, "l.tar": layer,
                                            "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(InvalidArgument, match="but the image config says"):
        store.load(path)
    assert store.list() == [] and store.snapshots.list_committed() == [] and store.snapshots.list_active() == []


@pytest.mark.parametrize("files, message", [
    ({"hello.txt": b"x"}, "neither a docker-archive"),
    ({"manifest.json": b"{not json"}, "is not valid JSON"),
    ({"manifest.json": b"[{}]"}, "lacks Config or Layers"),
    ({"manifest.json": json.dumps([{"Config": "c.json", "Layers": []}]).encode()}, "'c.json' is listed but missing"),
])
def test_bad_archives_are_one_line_errors(store, tmp_path, files, message):
    with pytest.raises(InvalidArgument) as err:
        store.load(write_tar(tmp_path / "a.tar", files))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_files_and_unknown_formats(store, tmp_path):
    with pytest.raises(NotFound, match="no such file or directory"):
        store.load(tmp_path / "nope.tar")
    (tmp_path / "junk").write_bytes(b"junk" * 10)
    with pytest.raises(InvalidArgument, match="cannot read .* as an image archive"):
        store.load(tmp_path / "junk")
    with pytest.raises(InvalidArgument, match="unknown archive format 'zip'"):
        store.save(["x"], tmp_path / "o.tar", "zip")


@pytest.mark.parametrize("diff_ids", [["sha256:../../../../tmp/evil"], ["md5:abc"], "not a list", [1]])
def test_a_config_with_bad_diff_ids_is_refused_before_anything_is_written(store, tmp_path, diff_ids):
    layer = tar_bytes(entry("a", data=b"a"))
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    path = write_tar(tmp_path / "bad.tar", {"c.json": config, "l.tar": layer,
                                            "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(InvalidArgument) as err:
        store.load(path)
    assert "\n" not in str(err.value)
    assert store.list() == [] and store.snapshots.list_committed() == [] and not (tmp_path / "evil").exists()
