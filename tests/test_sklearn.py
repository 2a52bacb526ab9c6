"""cgrad's estimators inside scikit-learn: tags, model selection in one and in two worker
processes (loky), Pipeline, clone, pickling, check_estimator, and one BLAS thread per
worker. The oracles are scikit-learn's own behaviour and metrics."""
import json
import os
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

import cgrad  # noqa: E402
from conftest import run_python  # noqa: E402
from cgrad import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import get_tags  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

SMALL = dict(hidden_layer_sizes=(8,), max_iter=15, learning_rate_init=0.01, random_state=0)


def _classification(n=90):
    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    return X.astype(np.float32), y


def _regression(n=90, n_targets=1):
    X, y = make_regression(n_samples=n, n_features=4, n_targets=n_targets, noise=0.1, random_state=0)
    return X.astype(np.float32), y / np.abs(y).max()


# ---------------------------------------------------------------- tags and the base classes

def test_tags_and_bases():
    clf, reg = MLPClassifier(), MLPRegressor()
    assert is_classifier(clf) and not is_regressor(clf)
    assert is_regressor(reg) and not is_classifier(reg)
    # mixins first, then BaseEstimator (scikit-learn's check_mixin_order)
    assert isinstance(clf, sklearn.base.ClassifierMixin) and isinstance(clf, sklearn.base.BaseEstimator)
    assert isinstance(reg, sklearn.base.RegressorMixin)
    for est in (clf, reg):
        t = get_tags(est)
        assert t.input_tags.two_d_array and not t.input_tags.sparse and not t.input_tags.allow_nan
        assert not t.input_tags.string and not t.input_tags.categorical
        assert t.target_tags.required and t.requires_fit
    assert get_tags(clf).estimator_type == "classifier"
    assert get_tags(clf).classifier_tags.multi_class and not get_tags(clf).classifier_tags.multi_label
    assert get_tags(reg).estimator_type == "regressor"
    assert get_tags(reg).target_tags.multi_output and get_tags(reg).target_tags.single_output


def test_clone_and_params():
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), alpha=0.01, random_state=3)
    c2 = clone(clf)
    assert c2 is not clf and c2.get_params() == clf.get_params()
    assert repr(clf) == "MLPClassifier(alpha=0.01, hidden_layer_sizes=(8, 4), random_state=3)"
    X, y = _classification()
    clf.fit(X, y)
    c3 = clone(clf)
    assert not hasattr(c3, "model_") and c3.get_params() == clf.get_params()
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        clf.set_params(nope=1)


def test_not_fitted_error():
    # scikit-learn's NotFittedError (so ValueError and AttributeError), and a RuntimeError as before
    for method in ("predict", "predict_proba", "predict_log_proba"):
        with pytest.raises(NotFittedError, match="not fitted"):
            getattr(MLPClassifier(), method)(np.zeros((2, 3)))
    with pytest.raises(RuntimeError):
        MLPRegressor().predict(np.zeros((2, 3)))


def test_input_validation():
    X, y = _classification()
    clf = MLPClassifier(**SMALL).fit(X, y)
    assert clf.n_features_in_ == 5
    with pytest.raises(ValueError, match="X has 4 features, but MLPClassifier is expecting 5"):
        clf.predict(X[:, :4])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier(**SMALL).fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="Expected 2D array"):
        MLPClassifier(**SMALL).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="0 sample"):
        MLPClassifier(**SMALL).fit(X[:0], y[:0])
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense data is required"):
        MLPClassifier(**SMALL).fit(scipy_sparse.csr_matrix(X), y)
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(**SMALL).fit(X, np.linspace(0, 1, len(X)))
    Xr, yr = _regression()
    with pytest.raises(ValueError):
        MLPRegressor(**SMALL).fit(Xr, np.array(["a"] * len(Xr), dtype=object))
    with pytest.raises(ValueError, match="requires y"):
        MLPRegressor(**SMALL).fit(Xr, None)
    with pytest.raises(ValueError, match="random_state"):
        MLPRegressor(**{**SMALL, "random_state": "x"}).fit(Xr, yr)


def test_fit_returns_self_keeps_input_and_dtypes():
    X, y = _classification()
    X64 = X.astype(np.float64)
    X_before, y_before = X64.copy(), y.copy()
    clf = MLPClassifier(**SMALL)
    assert clf.fit(X64, y) is clf
    np.testing.assert_array_equal(X64, X_before)
    np.testing.assert_array_equal(y, y_before)
    assert clf.predict_proba(X64).dtype == np.float64 and clf.predict_proba(X).dtype == np.float32
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X64)), clf.predict_proba(X64), rtol=1e-6)
    assert clf.n_iter_ == len(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]
    # random_state as a RandomState draws one seed from it: the same state, the same model
    a = MLPClassifier(**{**SMALL, "random_state": np.random.RandomState(5)}).fit(X, y).predict_proba(X)
    b = MLPClassifier(**{**SMALL, "random_state": np.random.RandomState(5)}).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_scores_are_sklearns():
    from sklearn.metrics import accuracy_score, r2_score
    X, y = _classification()
    labels = np.array(["cat", "dog", "eel"], dtype=object)[y]
    clf = MLPClassifier(**SMALL).fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert clf.score(X, labels) == accuracy_score(labels, clf.predict(X))
    Xr, yr = _regression(n_targets=2)
    reg = MLPRegressor(**SMALL).fit(Xr, yr)
    assert reg.predict(Xr).shape == (len(Xr), 2) and reg.n_outputs_ == 2
    assert reg.score(Xr, yr) == pytest.approx(r2_score(yr, reg.predict(Xr)))
    Xr, yr = _regression()
    reg = MLPRegressor(**SMALL).fit(Xr, yr.reshape(-1, 1))
    assert reg.predict(Xr).shape == (len(Xr),)  # one output: 1-D, as scikit-learn's


def test_feature_names_from_a_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = _classification()
    df = pd.DataFrame(X, columns=list("abcde"))
    clf = MLPClassifier(**SMALL).fit(df, y)
    assert list(clf.feature_names_in_) == list("abcde")
    np.testing.assert_array_equal(clf.predict_proba(df), MLPClassifier(**SMALL).fit(X, y).predict_proba(X))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(df[list("edcba")])


# ---------------------------------------------------------------- model selection

def test_grid_search_one_and_two_workers():
    X, y = _classification()
    grid = {"hidden_layer_sizes": [(4,), (8,)], "learning_rate_init": [0.003, 0.03]}
    runs = [GridSearchCV(MLPClassifier(max_iter=10, random_state=0), grid, cv=2, n_jobs=n).fit(X, y)
            for n in (1, 2)]
    # the same fits in worker processes as in this one, to the bit
    np.testing.assert_array_equal(runs[0].cv_results_["mean_test_score"], runs[1].cv_results_["mean_test_score"])
    assert runs[0].best_params_ == runs[1].best_params_
    assert runs[1].best_estimator_.score(X, y) == runs[0].best_estimator_.score(X, y)
    Xr, yr = _regression()
    reg = GridSearchCV(MLPRegressor(max_iter=10, random_state=0), {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    assert np.isfinite(reg.fit(Xr, yr).best_score_)


def test_cross_val_score_two_workers_equals_one():
    X, y = _classification()
    scores = [cross_val_score(MLPClassifier(**SMALL), X, y, cv=3, n_jobs=n) for n in (1, 2)]
    np.testing.assert_array_equal(scores[0], scores[1])
    Xr, yr = _regression()
    rscores = [cross_val_score(MLPRegressor(**SMALL), Xr, yr, cv=3, n_jobs=n) for n in (1, 2)]
    np.testing.assert_array_equal(rscores[0], rscores[1])


def test_pipeline_with_standard_scaler():
    X, y = _classification()
    X = X * 100 + 7  # badly scaled, so the scaler matters
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(**SMALL))])
    grid = GridSearchCV(pipe, {"mlp__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2).fit(X, y)
    assert grid.best_params_["mlp__alpha"] in (1e-4, 1e-1)
    pipe.fit(X, y)
    manual = MLPClassifier(**SMALL).fit(StandardScaler().fit_transform(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(X), manual.predict_proba(StandardScaler().fit(X).transform(X)))


def test_fitted_estimators_pickle_and_come_back_from_workers():
    X, y = _classification()
    Xr, yr = _regression()
    for est, (A, b) in ((MLPClassifier(**SMALL), (X, y)), (MLPRegressor(**SMALL), (Xr, yr))):
        est.fit(A, b)
        back = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(back.predict(A), est.predict(A))
        assert back.get_params() == est.get_params() and back.n_iter_ == est.n_iter_
    res = cross_validate(MLPClassifier(**SMALL), X, y, cv=2, n_jobs=2, return_estimator=True)
    local = cross_validate(MLPClassifier(**SMALL), X, y, cv=2, n_jobs=1, return_estimator=True)
    for remote, here in zip(res["estimator"], local["estimator"]):
        np.testing.assert_array_equal(remote.predict_proba(X), here.predict_proba(X))


# ---------------------------------------------------------------- scikit-learn's estimator checks

# Checks that fail for a reason outside estimators.py, kept here so the list is seen.
EXPECTED_FAILED_CHECKS: dict = {}


def _expected_failed(est):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01, random_state=0),
     MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01, random_state=0)],
    expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_dataframe_column_names_check():
    pytest.importorskip("pandas")
    from sklearn.utils.estimator_checks import check_dataframe_column_names_consistency
    for est in (MLPClassifier(**SMALL), MLPRegressor(**SMALL)):
        check_dataframe_column_names_consistency(type(est).__name__, est)


# ---------------------------------------------------------------- threads per worker

def _worker_threads(_):
    """cgrad's thread count and, independently, what threadpoolctl reads from cgrad's OpenBLAS."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import cgrad as cg
    here = os.path.realpath(os.path.dirname(cg._C.__file__))  # cgrad's OpenBLAS sits beside its binding
    openblas = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if os.path.dirname(os.path.realpath(i["filepath"])) == here]
    return cg.get_num_threads(), openblas


def test_one_blas_thread_per_loky_worker():
    pytest.importorskip("threadpoolctl")
    before = cgrad.get_num_threads()
    cgrad.set_num_threads(2)  # the parent's choice is the parent's only
    try:
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(_worker_threads)(i) for i in range(4))
    finally:
        cgrad.set_num_threads(before)
    assert out == [(1, [1])] * 4


def test_forked_worker_starts_at_one_thread():
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    before = cgrad.get_num_threads()
    cgrad.set_num_threads(2)
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.map(_worker_threads, [0]) == [(1, [1])]
    finally:
        cgrad.set_num_threads(before)


def _run_python(code, **env):
    return run_python(code, env).stdout.strip().splitlines()[-1]


def test_cgrad_num_threads_reaches_the_workers():
    pytest.importorskip("threadpoolctl")
    out = _run_python("""
        import json, joblib, cgrad
        from test_sklearn import _worker_threads
        print(json.dumps([cgrad.get_num_threads(),
                          joblib.Parallel(n_jobs=2)(joblib.delayed(_worker_threads)(i) for i in range(2))]))
    """, CGRAD_NUM_THREADS="2")
    # cgrad's threads split the GEMMs; OpenBLAS's own pool stays at 1 (csrc/threads.c)
    assert json.loads(out) == [2, [[2, [1]], [2, [1]]]]
    for bad in ("two", "\u00b2", "0"):  # '²' passes str.isdigit but not int()
        proc = run_python("import cgrad", {"CGRAD_NUM_THREADS": bad}, check=False)
        assert proc.returncode != 0 and "CGRAD_NUM_THREADS must be a positive integer" in proc.stderr, bad


# ---------------------------------------------------------------- without scikit-learn

def test_estimators_without_sklearn(tmp_path):
    """The stand-in bases in a process where scikit-learn cannot be imported: the same
    parameter protocol, scores equal to scikit-learn's metrics, the same kinds of errors."""
    from sklearn.metrics import accuracy_score, r2_score
    X, y = _classification()
    Xr, yr = _regression(n_targets=2)
    np.savez(tmp_path / "data.npz", X=X, y=y, Xr=Xr, yr=yr)
    out = _run_python(f"""
        import json, os, pickle, sys
        sys.modules["sklearn"] = None  # import sklearn raises ImportError
        import numpy as np, cgrad
        d = np.load(os.environ["CGRAD_TEST_DATA"])
        from cgrad.estimators import NotFittedError
        clf = cgrad.MLPClassifier(**{SMALL!r})
        assert not hasattr(clf, "__sklearn_is_fitted__") and clf._estimator_type == "classifier"
        errors = {{}}
        def kind(f):
            try:
                f()
            except Exception as e:
                return [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins"][:3]
        errors["unfitted"] = kind(lambda: clf.predict(d["X"]))
        clf.set_params(alpha=0.01)
        errors["param"] = kind(lambda: clf.set_params(nope=1))
        clf.fit(d["X"], d["y"])
        bad = d["X"].copy(); bad[0, 0] = np.nan
        errors["nan"] = kind(lambda: clf.predict(bad))
        errors["1d"] = kind(lambda: clf.predict(d["X"][:, 0]))
        errors["features"] = kind(lambda: clf.predict(d["X"][:, :3]))
        errors["empty"] = kind(lambda: cgrad.MLPClassifier().fit(d["X"][:0], d["y"][:0]))
        class Sparse:
            def toarray(self): return d["X"]
        errors["sparse"] = kind(lambda: clf.predict(Sparse()))
        reg = cgrad.MLPRegressor(**{SMALL!r}).fit(d["Xr"], d["yr"])
        errors["y_text"] = kind(lambda: cgrad.MLPRegressor().fit(d["Xr"], ["a"] * len(d["Xr"])))
        back = pickle.loads(pickle.dumps(reg))
        print(json.dumps(dict(errors=errors, params=clf.get_params(), pred=clf.predict(d["X"]).tolist(),
                              acc=clf.score(d["X"], d["y"]), acc_column=clf.score(d["X"], d["y"][:, None]),
                              rpred=reg.predict(d["Xr"]).tolist(),
                              r2=reg.score(d["Xr"], d["yr"]), back=bool((back.predict(d["Xr"]) == reg.predict(d["Xr"])).all()),
                              sk="sklearn" in sys.modules and sys.modules["sklearn"] is not None)))
    """, CGRAD_TEST_DATA=str(tmp_path / "data.npz"))
    r = json.loads(out)
    assert not r["sk"]
    assert r["acc"] == accuracy_score(y, r["pred"])
    assert r["acc_column"] == r["acc"]  # y as a column of labels scores the same
    assert r["r2"] == pytest.approx(r2_score(yr, np.array(r["rpred"])), rel=1e-6)
    assert r["params"] == {**MLPClassifier(**SMALL).get_params(), "alpha": 0.01, "hidden_layer_sizes": [8]}
    e = r["errors"]
    assert e["unfitted"] == ["ValueError", "AttributeError", "RuntimeError"]
    assert e["sparse"][0] == "TypeError" and e["param"][0] == "ValueError"
    assert all(e[k][0] == "ValueError" for k in ("nan", "1d", "features", "empty", "y_text")), e
    assert r["back"]
