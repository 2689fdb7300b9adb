"""What dfseg-bench measures: block suite, benchmark specs and random validation networks."""

from dfseg.arch import PRESETS
from dfseg.bench import suite
from dfseg.parts import network_parts
from dfseg.sizes import Size


def test_default_table_suite_covers_presets_and_space():
    space = suite.table_space()
    parts = suite.table_parts(suite.default_benchmark_models(), [Size(640, 360)], space)
    keys = [p.key for p in parts]
    assert len(keys) == len(set(keys)) and keys == sorted(keys)
    for name, arch in PRESETS.items():
        size = Size(640, 360) if arch.is_segmentation else Size(224, 224)
        assert {p.key for p in network_parts(arch, size.height, size.width)} <= set(keys), name
    assert {p.key for p in space.all_parts()} <= set(keys)
    assert {p.kind for p in parts} >= {"stem", "basic", "bottleneck", "classifier", "ppm", "wc", "fuse", "head"}


def test_decoder_space_adds_every_width_controller_setting():
    base = suite.table_parts(["df1-seg"], [Size(640, 360)])
    wide = suite.table_parts(["df1-seg"], [Size(640, 360)], decoder_space=True)
    assert set(p.key for p in base) < set(p.key for p in wide)
    assert {p.c_out for p in wide if p.kind == "wc"} == {19, 32, 64, 128, 256, 512}


def test_benchmark_specs_run_classifiers_at_224_once():
    specs = suite.benchmark_specs(["df1-seg", "df1", "resnet18"], [Size(640, 360), Size(1280, 720)])
    labels = [s.label for s in specs]
    assert labels == ["df1-seg@640x360", "df1-seg@1280x720", "df1@224x224", "resnet18@224x224"]
    assert specs[-1].arch is None


def test_random_architectures_are_distinct_members_of_the_space():
    space = suite.table_space()
    archs = suite.random_architectures(space, 20, seed=3)
    assert len({a.short() for a in archs}) == 20
    assert all(space.contains(a) for a in archs)
    assert [a.short() for a in suite.random_architectures(space, 20, seed=3)] == [a.short() for a in archs]
    specs = suite.validation_specs(space, 20, 3, [Size(640, 360)])
    assert len(specs) == len(PRESETS) + 20


def test_depth_variants_calibrate_with_the_models_parts_only():
    from dfseg.arch import PRESETS
    from dfseg.parts import network_parts

    for name in ("df1", "df2", "df2a", "df1-seg"):
        arch = PRESETS[name]
        variant = suite.depth_variant(arch)
        size = (360, 640) if arch.is_segmentation else (224, 224)
        keys = {p.key for p in network_parts(arch, *size)}
        assert variant is not None and variant != arch
        assert {p.key for p in network_parts(variant, *size)} <= keys
        assert [len(s) for s in variant.stages] != [len(s) for s in arch.stages]
    specs = suite.benchmark_specs(["df1", "df2"], [suite.CLASSIFIER_SIZE])
    calibration = suite.calibration_specs(suite.table_space(), 20, 0, models=specs)
    assert len(calibration) == suite.CALIBRATION_COUNT + 2 and not {s.label for s in calibration} & {s.label for s in specs}


def test_calibration_networks_are_never_the_ones_the_validation_scores():
    """Whatever --random and --seed the validation is given, the table calibrated on other members (a space
    of 61 members, where the default validation's members are not those of another)."""
    from dfseg.space import SearchSpace

    space = SearchSpace(widths=(64, 128, 256), blocks_per_stage=((1, 2), (1, 2), (1, 1)))
    for count, seed in ((20, 0), (8, 3), (12, 7)):
        validated = {a.short() for a in suite.random_architectures(space, count, seed)}
        calibration = suite.calibration_specs(space, count, seed)
        assert len(calibration) == suite.CALIBRATION_COUNT
        assert not {s.arch.short() for s in calibration} & validated
