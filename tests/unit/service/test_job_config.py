"""The job config file: a valid file reads into settings; each invalid key is reported
with the file, the line it is on, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbackup.errors import ExitCode
from bbackup.service.config import ConfigError, load_config, parse_config

GOOD = """\
metrics_file = "/var/lib/node_exporter/bbackup.prom"

[repositories.offsite]
url = "s3://acme-backups/fileserver"
password_file = "/etc/bbackup/offsite.pass"
s3_endpoint = "https://s3.eu-central-1.wasabisys.com"

[jobs.documents]
repository = "offsite"
sources = ["/srv/documents", "/etc"]
exclude = ["*.tmp", "**/node_modules"]
schedule = "daily 02:00"
full_every = "monthly"
retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
prune = "weekly"
drill = { schedule = "weekly", sample = "5%", compare_source = true }
hooks = { before = "pg_dump -f /srv/documents/db.sql app", after = "" }
notify = { webhook = "https://hooks.example/backup", on = ["failure", "success"] }
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "config.toml")
    return caught.value.problems


def test_the_documented_example_reads_into_settings(tmp_path: Path) -> None:
    config = parse_config(GOOD, tmp_path / "config.toml")
    job = config.job("documents")
    assert config.repository_of(job).url == "s3://acme-backups/fileserver"
    assert job.sources == ("/srv/documents", "/etc")
    assert job.schedule is not None and job.schedule.cron == "0 2 * * *"
    assert job.full_every == "monthly"
    assert job.retention is not None and (job.retention.daily, job.retention.monthly) == (7, 12)
    assert job.hooks.before == "pg_dump -f /srv/documents/db.sql app" and job.hooks.after is None
    assert job.notify.on == ("failure", "success")
    assert job.drill is not None and job.drill.sample == "5%"
    assert config.metrics_file == "/var/lib/node_exporter/bbackup.prom"


def test_a_bad_schedule_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    found = problems(GOOD.replace('"daily 02:00"', '"dialy 02:00"'), tmp_path)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'config.toml'}:12: jobs.documents.schedule: ")
    assert "'dialy 02:00' is not a schedule" in found[0]


def test_a_time_of_day_out_of_range_is_named(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace('"daily 02:00"', '"daily 25:00"'), tmp_path)
    assert ":12: jobs.documents.schedule: '25:00' is not a time of day" in found


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace("exclude =", "exclud ="), tmp_path)
    assert ":11: jobs.documents.exclud: unknown key" in found


def test_a_retention_count_of_the_wrong_type_names_the_inline_key(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace("keep_daily = 7", 'keep_daily = "seven"'), tmp_path)
    assert ":14: jobs.documents.retention.keep_daily: invalid count 'seven'" in found


def test_a_job_naming_an_undefined_repository_says_which_exist(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace('repository = "offsite"', 'repository = "ofsite"'), tmp_path)
    assert ":9: jobs.documents.repository: no repository 'ofsite'" in found
    assert "known: offsite" in found


def test_missing_required_keys_are_each_reported(tmp_path: Path) -> None:
    text = "[repositories.r]\npassword_file = 'x'\n\n[jobs.j]\nrepository = 'r'\n"
    found = problems(text, tmp_path)
    assert any(":1: repositories.r.url: is required" in p for p in found)
    assert any(":4: jobs.j.sources: is required" in p for p in found)


def test_both_password_sources_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        'password_file = "/etc/bbackup/offsite.pass"',
        'password_file = "/etc/p"\npassword_command = "pass show backup"',
    )
    (found,) = problems(text, tmp_path)
    assert ":6: repositories.offsite.password_command: give password_file or" in found


def test_a_notify_event_that_does_not_exist_is_named(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace('"failure", "success"', '"failure", "sucess"'), tmp_path)
    assert ":18: jobs.documents.notify.on: 'sucess' is not one of" in found


def test_a_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    (found,) = problems(GOOD.replace('prune = "weekly"', "prune = weekly"), tmp_path)
    assert f"{tmp_path / 'config.toml'}:15: not valid TOML" in found


def test_a_key_in_a_table_header_section_is_found_on_its_line(tmp_path: Path) -> None:
    text = (
        "[repositories.r]\nurl = '/srv/repo'\n\n[jobs.j]\nrepository = 'r'\nsources = ['/a']\n"
        "\n[jobs.j.retention]\nkeep_last = 3\nkeep_weekly = -1\n"
    )
    (found,) = problems(text, tmp_path)
    assert ":10: jobs.j.retention.keep_weekly: must be 0 or more" in found


def test_a_missing_file_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(Exception) as caught:
        load_config(tmp_path / "nowhere.toml")
    assert getattr(caught.value, "exit_code", None) == ExitCode.USAGE
    assert str(tmp_path / "nowhere.toml") in str(caught.value)
