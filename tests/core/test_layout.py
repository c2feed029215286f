from app.core.layout import columns, grid


def test_columns_follow_the_deepest_need() -> None:
    needs = {"lint": [], "unit": [], "build": ["lint"], "e2e": ["build", "unit"], "x": ["nope"]}
    assert columns(needs) == {"lint": 0, "unit": 0, "build": 1, "e2e": 2, "x": 0}


def test_a_cycle_is_cut_not_followed_forever() -> None:
    assert columns({"a": ["b"], "b": ["a"]}) == {"a": 1, "b": 0}


def test_grid_rows_count_down_each_column() -> None:
    order = ["lint", "unit", "build", "e2e"]
    needs = {"build": ["lint"], "e2e": ["build"]}
    assert grid(order, needs) == {"lint": (0, 0), "unit": (0, 1), "build": (1, 0), "e2e": (2, 0)}
