"""`pymesh control serve` with and without --kubernetes: what it refuses before starting, and a
kubeconfig it cannot use (a clear error and exit 1, no traceback)."""

from pymesh.control.command import main


def test_config_dir_is_required_without_kubernetes(capsys):
    assert main(["serve", "--insecure"]) == 2
    assert "--config-dir DIR is required (or --kubernetes)" in capsys.readouterr().err


def test_namespace_needs_kubernetes(capsys, tmp_path):
    assert main(["serve", "--insecure", "--config-dir", str(tmp_path), "--namespace", "shop"]) == 2
    assert "--namespace needs --kubernetes" in capsys.readouterr().err


def test_an_unusable_kubeconfig_is_a_clear_error(capsys, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n")
    code = main(["serve", "--insecure", "--kubernetes", "--kubeconfig", str(kubeconfig),
                 "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code == 1 and "kubernetes configuration:" in err and "Traceback" not in err, err


def test_a_missing_kubeconfig_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = main(["serve", "--insecure", "--kubernetes", "--kubeconfig", str(tmp_path / "none"),
                 "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code == 1 and "no kubeconfig at" in err and "Traceback" not in err, err
