"""Lo-fi form on any archive: the loop's length and how much of it repeats."""
from lofi_pipeline.model.form import loop_length, variation_share


def test_the_loop_is_the_datas_where_the_data_loops_else_four_bars():
    assert loop_length(4, 1.0) == 4 and loop_length(2, 0.9) == 2 and loop_length(8, 0.6) == 8
    assert loop_length(1, 1.0) == 2  # a one-bar loop is played as two
    assert loop_length(2, 0.1) == 4 and loop_length(8, 0.3) == 4  # chorales, songs: no loop of their own


def test_a_loop_repeats_its_harmony_by_default_and_as_the_data_does_by_name():
    assert variation_share("loop", 0.2) == 0.0
    assert variation_share("data", 0.25) == 0.75
    assert variation_share(0.3, 0.9) == 0.3
