"""The shipped ISO 3166-1 country table and its parser."""

from __future__ import annotations

import pytest

from router.countries import load_countries, parse_countries_csv


def test_table_has_all_249_codes_with_valid_points() -> None:
    countries = load_countries()
    assert len(countries) == 249
    for code, country in countries.items():
        assert code == country.code and len(code) == 2 and code.isupper()
        assert -90 <= country.lat <= 90 and -180 <= country.lon <= 180
        assert country.name


def test_table_has_the_usual_suspects_and_no_user_assigned_codes() -> None:
    countries = load_countries()
    for code in ("US", "GB", "DE", "IN", "JP", "CN", "HK", "SG", "AU", "BR", "ZA", "SS", "CW"):
        assert code in countries
    for code in ("XK", "AN", "GZ", "EU", "UK"):
        assert code not in countries
    assert countries["DE"].name == "Germany"


def test_points_are_in_the_right_part_of_the_world() -> None:
    countries = load_countries()
    assert 24 < countries["US"].lat < 50 and -125 < countries["US"].lon < -66
    assert -44 < countries["AU"].lat < -10 and 113 < countries["AU"].lon < 154
    assert countries["BR"].lat < 0 and countries["BR"].lon < -30
    assert countries["JP"].lat > 30 and countries["JP"].lon > 128


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        load_countries()["ZZ"] = load_countries()["DE"]  # type: ignore[index]


def test_parse_skips_comments_and_reports_bad_lines() -> None:
    text = '# source\ncode,name,lat,lon\nDE,Germany,51.2,10.5\nBQ,"Bonaire, Saba",12.2,-68.3\n'
    countries = parse_countries_csv(text)
    assert list(countries) == ["DE", "BQ"]
    assert countries["BQ"].name == "Bonaire, Saba"
    with pytest.raises(ValueError, match="header"):
        parse_countries_csv("country,lat,lon\n")
    with pytest.raises(ValueError, match="line 3: lat must be between"):
        parse_countries_csv("code,name,lat,lon\nDE,Germany,51,10\nFR,France,91,2\n")
    with pytest.raises(ValueError, match="line 3: duplicate code DE"):
        parse_countries_csv("code,name,lat,lon\nDE,Germany,51,10\nDE,Germany,51,10\n")
    with pytest.raises(ValueError, match="two upper-case letters"):
        parse_countries_csv("code,name,lat,lon\nde,Germany,51,10\n")
    with pytest.raises(ValueError, match="not a number"):
        parse_countries_csv("code,name,lat,lon\nDE,Germany,north,10\n")
