"""The indicator systems equal the seed, and a bad system file is refused with file and field."""

from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.i18n import set_language
from pipeline.systems import load_system
from conftest import run

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_9523e8e3eb801ba5.txt"


def seed_text() -> str:
    if not SEED.exists():
        pytest.skip("the seed document is not beside this checkout")
    # cells split across lines are joined without a space (seeds/README.md)
    return "".join(line.strip().strip("\t") for line in SEED.read_text(encoding="utf-8").splitlines())


def test_zone_matches_the_seed_table():
    zone = load_system("zone")
    assert zone.codes == tuple(f"Z{n:02d}" for n in range(1, 14))
    assert [i.max for i in zone.items] == [7.0] * 10 + [10.0] * 3
    assert zone.total == 100 and sum(i.max for i in zone.items) == 100
    assert [i.level1 for i in zone.items] == ["基础指标"] * 10 + ["进阶指标"] * 3
    assert [i.level2 for i in zone.items] == ["服务体系"] * 4 + ["服务空间"] * 3 + ["互助平台"] * 3 + ["模式创新", "治理贡献", "社会影响"]
    assert all(i.level3 and i.level3 != i.criterion for i in zone.items)


def test_community_matches_the_seed_table():
    community = load_system("community")
    assert community.codes == tuple(f"C{n:02d}" for n in range(1, 20))
    assert [i.max for i in community.items] == [4.0] * 9 + [5.0] * 7 + [10.0, 10.0, 9.0]
    assert community.total == 100
    names = [i.level3 for i in community.items]
    assert names[:9] == ["党建引领", "三驾马车", "自治共治", "居住环境", "社区文化", "邻里关系", "便民服务", "特殊人群服务", "数字化服务"]
    assert names[9:16] == ["聚焦重点难点", "项目化推进", "品牌打造", "资源整合", "项目保障", "项目成效", "群众满意"]
    assert {i.level2 for i in community.items[9:16]} == {"项目运作"}
    assert [i.level2 for i in community.items[16:]] == ["模式创新", "治理贡献", "社会影响"]


@pytest.mark.parametrize("system_id", ["zone", "community"])
def test_every_criterion_is_verbatim_in_the_seed(system_id):
    text = seed_text()
    for item in load_system(system_id).items:
        assert item.criterion in text, item.code


def test_split_cells_are_joined_without_a_space():
    zone, community = load_system("zone"), load_system("community")
    assert "形成了课题研究成果，" in zone.by_code["Z12"].criterion
    assert "建立稳定的联动机制。" in community.by_code["C01"].criterion
    assert "驻区单位等多方资源，" in community.by_code["C13"].criterion
    assert "媒体报道以及荣誉表彰，" in community.by_code["C19"].criterion
    assert community.by_code["C09"].criterion.startswith("构筑了社区美好数字服务新场景。")


def test_decisions_are_recorded_in_the_data():
    zone, community = load_system("zone"), load_system("community")
    assert any("九个" in d and "十项" in d for d in zone.decisions)
    assert any("加分项" in d and "进阶指标" in d for d in zone.decisions)
    assert any("其他服务" in d and "数字化服务" in d for d in community.decisions)


def write_system(tmp_path, mutate) -> Path:
    data = yaml.safe_load((Path(load_system("zone").path)).read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_custom_system_in_the_same_schema_loads(tmp_path):
    path = write_system(tmp_path, lambda d: d.update(id="pilot", name="试点体系"))
    system = load_system(path)
    assert system.id == "pilot" and len(system.items) == 13


@pytest.mark.parametrize("mutate, field, english", [
    (lambda d: d["items"][1].update(code="Z01"), "items[2] (Z01).code：编号 'Z01' 重复", "items[2] (Z01).code: duplicate code"),
    (lambda d: d["items"][0].update({"满分": 0}), "items[1] (Z01).满分：须为正数", "items[1] (Z01).满分: must be a positive number"),
    (lambda d: d["items"][0].update({"满分": 8}), "各项满分之和为 101", "the maxima sum to 101"),
    (lambda d: d["items"][3].pop("评价内容"), "items[4] (Z04).评价内容：缺少字段", "items[4] (Z04).评价内容: missing field"),
    (lambda d: d.update(total=90), "total 声明为 90", "total declares 90"),
])
def test_an_invalid_system_names_file_and_field(tmp_path, mutate, field, english):
    path = write_system(tmp_path, mutate)
    for lang, expected in (("zh", field), ("en", english)):
        set_language(lang)
        with pytest.raises(ConfigError) as err:
            load_system(path)
        assert str(path) in str(err.value) and expected in str(err.value)


def test_unknown_system_id_is_a_usage_error(tmp_path):
    result = run(tmp_path, "systems", "show", "nonesuch", expect=2)
    assert "未知的指标体系 'nonesuch'" in result.output
    result = run(tmp_path, "--lang", "en", "systems", "show", "nonesuch", expect=2)
    assert "Unknown indicator system 'nonesuch'" in result.output


def test_systems_cli_lists_and_shows(tmp_path):
    listing = run(tmp_path, "systems").output
    assert "zone" in listing and "community" in listing
    shown = run(tmp_path, "systems", "show", "community", "--full").output
    assert "数字化服务" in shown and "C19" in shown
