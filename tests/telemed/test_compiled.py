"""Querysets compiled once (telemed.compiled): the same answers as the ORM, in one query."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from accounts.models import User
from telemed.compiled import CompiledQuery

pytestmark = pytest.mark.django_db(transaction=True)

token_by_key = CompiledQuery(
    Token, lambda key: Token.objects.select_related("user").filter(key=key), arity=1
)
user_by_email_and_phone = CompiledQuery(
    User,
    lambda email, phone: User.objects.filter(email=email, phone=phone).defer("full_name"),
    arity=2,
)


def test_answers_as_the_orm_with_related_rows_in_one_query(clinician: User, specialist: User):
    token = Token.objects.create(user=clinician)
    Token.objects.create(user=specialist)

    with CaptureQueriesContext(connection) as queries:
        [found] = token_by_key(token.key)
        assert found.user.email == clinician.email  # loaded with the token
        assert found.created == Token.objects.get(key=token.key).created  # converted as the ORM
    assert len(queries) == 2  # ours, and the ORM's comparison
    assert token_by_key("no-such-key") == []


def test_values_are_parameters_never_sql(clinician: User):
    Token.objects.create(user=clinician)

    assert token_by_key("' OR '1'='1") == []
    assert token_by_key('x" OR 1=1 --') == []


def test_deferred_fields_load_when_read(clinician: User):
    clinician.phone, clinician.full_name = "+996700123456", "Aibek Toktogulov"
    clinician.save()

    [found] = user_by_email_and_phone(clinician.email, "+996700123456")
    assert found.get_deferred_fields() == {"full_name"}
    assert found.full_name == "Aibek Toktogulov"
    assert user_by_email_and_phone(clinician.email, "+996700000000") == []


def test_each_thread_uses_its_own_connection(clinician: User):
    token = Token.objects.create(user=clinician)
    answers: list[str] = []

    def look_up() -> None:
        try:
            answers.append(token_by_key(token.key)[0].user.email)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=look_up) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [clinician.email] * 3


def test_a_lookup_that_rewrites_its_value_is_refused(clinician: User):
    rewritten = CompiledQuery(User, lambda text: User.objects.filter(email__contains=text), 1)

    with pytest.raises(ValueError, match="each value must be one SQL parameter"):
        rewritten("demo")
