import numpy as np
import pytest

from gaussmix import GaussianMixture, SelectionTable, select

from .conftest import COVARIANCE_TYPES, make_blobs


def generate(covariance_type, k=3, n_per=400, seed=0):
    """Well-separated clusters whose shape is exactly of the given covariance type."""
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0], [14.0, 2.0], [3.0, 15.0], [16.0, 16.0]])[:k]
    rotation = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    parts = []
    for i, c in enumerate(centres):
        z = rng.randn(n_per, 2)
        if covariance_type == "full":
            angle = 0.9 * i
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            z = z * [2.0, 0.4] @ rot.T
        elif covariance_type == "tied":
            z = z * [2.0, 0.4] @ rotation.T
        elif covariance_type == "diag":
            z = z * ([2.0, 0.4] if i % 2 == 0 else [0.4, 1.6])
        else:
            z = z * (0.5 + 0.5 * i)
        parts.append(c + z)
    return np.concatenate(parts)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_select_recovers_the_generating_model(covariance_type):
    X = generate(covariance_type)
    best, table = select(X, n_components=range(1, 6), random_state=0)
    assert (best.n_components, best.covariance_type) == (3, covariance_type), str(table)
    assert isinstance(table, SelectionTable) and len(table) == 20


def test_select_equals_individual_fits():
    X = generate("diag", k=2, n_per=150)
    best, table = select(X, n_components=[1, 2, 3], covariance_types=["full", "diag"],
                         random_state=3, n_init=2, tol=1e-4)
    for record in table:
        gm = GaussianMixture(record["n_components"], covariance_type=record["covariance_type"],
                             random_state=3, n_init=2, tol=1e-4).fit(X)
        assert record["score"] == pytest.approx(gm.bic(X), rel=1e-10)
        assert record["n_iter"] == gm.n_iter_
    ref = GaussianMixture(best.n_components, covariance_type=best.covariance_type,
                          random_state=3, n_init=2, tol=1e-4).fit(X)
    np.testing.assert_allclose(best.means_, ref.means_, rtol=1e-10)


def test_table_records_grid_and_text():
    X = generate("spherical", k=2, n_per=100)
    best, table = select(X, n_components=[1, 2], covariance_types=["spherical", "full"],
                         criterion="aic", random_state=0)
    assert table.criterion == "aic"
    assert table.best["score"] == min(r["score"] for r in table)
    ks, types, scores = table.grid()
    assert ks == [1, 2] and types == ["full", "spherical"] and scores.shape == (2, 2)
    record = table[0]
    assert set(record) == {"n_components", "covariance_type", "score", "log_likelihood",
                           "n_parameters", "converged", "n_iter"}
    assert record["score"] == pytest.approx(-2 * record["log_likelihood"]
                                            + 2 * record["n_parameters"])
    text = str(table)
    assert text.startswith("AIC (lower is better)") and text.count("*") == 1
    frame = table.to_pandas()
    assert list(frame["n_components"]) == [1, 1, 2, 2]


def test_select_with_sample_weights_equals_repeated_rows():
    rng = np.random.RandomState(1)
    X = generate("diag", k=2, n_per=60)
    counts = rng.randint(1, 4, size=len(X))
    kw = dict(n_components=[1, 2, 3], covariance_types=["diag"], random_state=0, tol=1e-7,
              max_iter=1000)
    _, weighted = select(X, sample_weight=counts, **kw)
    _, repeated = select(np.repeat(X, counts, axis=0), **kw)
    np.testing.assert_allclose([r["score"] for r in weighted], [r["score"] for r in repeated],
                               rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(criterion="icl"), "criterion must be one of 'bic', 'aic'"),
        (dict(covariance_types=["round"]), "covariance_types entry must be one of"),
        (dict(n_components=[]), "at least one option"),
        (dict(n_components=[0, 1]), "n_components must be positive"),
        (dict(n_components=[50]), "larger than the number of samples"),
        (dict(covariance_type="full"), r"through select's own argument covariance_types \(for "
                                       r"example select\(X, covariance_types=\[\.\.\.\]\)\)"),
    ],
)
def test_bad_selection_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        select(np.random.RandomState(0).randn(30, 2), **kwargs)


def test_a_single_number_of_components_is_a_grid_of_one():
    X = make_blobs()
    best, table = select(X, n_components=2, covariance_types=["full"], random_state=0)
    assert len(table) == 1 and best.n_components == 2
