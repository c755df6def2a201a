"""Refusing keywords a call does not take: the message names the call, the close name, all names."""

from __future__ import annotations

import pytest

from deploytrigger import InvalidArgumentTypeError
from deploytrigger._helpers.arguments import unexpected_keywords

ACCEPTED = ("api_url", "api_key", "auth_string", "pool_size")


def refusal(given: tuple, accepted: tuple = ACCEPTED) -> str:
    with pytest.raises(InvalidArgumentTypeError) as caught:
        unexpected_keywords(given, accepted, "Client")
    return str(caught.value)


def test_accepted_keywords_pass() -> None:
    unexpected_keywords(("api_key", "pool_size"), ACCEPTED, "Client")
    unexpected_keywords((), ACCEPTED, "Client")


def test_a_typo_is_answered_with_the_close_name_and_every_name_in_order() -> None:
    assert refusal(("url",)) == (
        "Client got unexpected keyword argument 'url'; did you mean api_url? "
        "It takes api_url, api_key, auth_string, pool_size"
    )


def test_a_name_close_to_nothing_gets_the_list_without_a_guess() -> None:
    assert refusal(("colour",)) == (
        "Client got unexpected keyword argument 'colour'; "
        "it takes api_url, api_key, auth_string, pool_size"
    )


def test_several_typos_each_get_their_guess_and_the_message_stays_one_line() -> None:
    message = refusal(("pool_sise", "colour", "api_kye"))
    assert message.startswith(
        "Client got unexpected keyword arguments 'api_kye', 'colour', 'pool_sise'; "
        "did you mean api_key (for 'api_kye'), pool_size (for 'pool_sise')? It takes"
    )
    assert "\n" not in message
