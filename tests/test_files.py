import os

import pytest

from sublim_toy.files import atomic_write, write_json


def test_written_files_get_ordinary_permissions(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path):
    def explode(tmp):
        tmp.write_text("half a result")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.json", explode)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_result_survives_a_failed_rewrite(tmp_path):
    write_json(tmp_path / "out.json", {"old": True})
    with pytest.raises(TypeError):
        write_json(tmp_path / "out.json", {"bad": object()})
    assert (tmp_path / "out.json").read_text() == '{\n  "old": true\n}\n'
