import io
import tarfile

from orch.node.runtime import layers
from orch.node.runtime.tarstream import GoTarFile


def test_an_archive_ends_after_its_two_zero_blocks():
    out = io.BytesIO()
    with GoTarFile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert len(out.getvalue()) == 512 * 2 + 1024  # header, data block, end marker: no 10 KiB record
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(out.getvalue()))] == ["a"]


def test_a_layer_is_the_same_in_a_process_that_imported_cp(tmp_path):
    # cp and its worker once set tarfile.RECORDSIZE for the whole process: the same rootfs then
    # got another diff ID in the agent (and a full test run) than in a fresh process.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/motd").write_text("hi\n")
    before = layers.create_layer(tmp_path, io.BytesIO())
    import orch.cli.cp  # noqa: F401
    import orch.node.runtime.fsworker  # noqa: F401

    assert tarfile.RECORDSIZE == 20 * tarfile.BLOCKSIZE
    assert layers.create_layer(tmp_path, io.BytesIO()) == before
