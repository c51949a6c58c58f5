"""Querysets compiled to SQL once and run many times with new values.

The ORM builds and compiles a queryset's SQL on every evaluation. For the reads a viewer makes
hundreds of times a second (an API token, the instance of a frame) that costs more CPU than
the database takes to answer them: about a fifth of a rendered frame's request, measured with
py-spy on the web process. A CompiledQuery builds its queryset once per database connection
with a marker in place of each value, keeps the SQL, and afterwards only puts the values in
and turns the rows into model instances as the ORM does (select_related and deferred fields
included).

Only for plain lookups: each value must reach the SQL as a parameter of its own, unchanged
(exact matches on text fields: the stand-in is a string; not `__contains`, whose pattern the
ORM rewrites). Anything else is refused when the query is first compiled.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql.compiler import SQLCompiler

M = TypeVar("M", bound=Model)


class _Marker(str):
    """A value that stands for parameter `index` while the SQL is compiled."""

    __slots__ = ("index",)
    index: int


def _marker(index: int) -> _Marker:
    marker = _Marker(f"\x00compiled query parameter {index}\x00")
    marker.index = index
    return marker


@dataclass
class _Compiled:
    sql: str
    # For each parameter of the SQL: the index of the value it takes, or None and a constant.
    slots: list[tuple[int | None, Any]]
    compiler: SQLCompiler
    converters: dict
    init_list: list[str]
    fields_start: int
    fields_end: int
    populators: list


class CompiledQuery(Generic[M]):
    """`build(*values)` -> a queryset of model instances; calling the CompiledQuery with the
    values returns what `list(build(*values))` would."""

    def __init__(self, model: type[M], build: Callable[..., QuerySet[M]], arity: int) -> None:
        self.model = model
        self.build = build
        self.arity = arity
        # One compilation per connection (a connection belongs to one thread): the compiler's
        # value converters take the connection they were made for.
        self._compiled: weakref.WeakKeyDictionary[Any, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, using: str) -> _Compiled:
        markers = [_marker(index) for index in range(self.arity)]
        queryset = self.build(*markers).using(using)
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots: list[tuple[int | None, Any]] = [
            (param.index, None) if isinstance(param, _Marker) else (None, param) for param in params
        ]
        found = sorted(index for index, _ in slots if index is not None)
        if found != list(range(self.arity)):
            raise ValueError(f"{self.model.__name__}: each value must be one SQL parameter")
        select, klass_info = compiler.select, compiler.klass_info
        columns = [column[0] for column in select[: compiler.col_count]]
        if (
            compiler.annotation_col_map
            or klass_info is None
            or compiler.has_composite_fields(columns)
        ):
            raise ValueError(f"{self.model.__name__}: only plain model querysets are compiled")
        select_fields = klass_info["select_fields"]
        start, end = select_fields[0], select_fields[-1] + 1
        return _Compiled(
            sql=sql,
            slots=slots,
            compiler=compiler,
            converters=compiler.get_converters(columns),
            init_list=[column[0].target.attname for column in select[start:end]],
            fields_start=start,
            fields_end=end,
            populators=get_related_populators(klass_info, select, using),
        )

    def __call__(self, *values: Any) -> list[M]:
        if len(values) != self.arity:
            raise TypeError(f"expected {self.arity} values, got {len(values)}")
        using = router.db_for_read(self.model)
        connection = connections[using]
        compiled = self._compiled.get(connection)
        if compiled is None:
            compiled = self._compiled[connection] = self._compile(using)
        params = [values[index] if index is not None else value for index, value in compiled.slots]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        model = compiled.compiler.klass_info["model"]
        found = []
        if compiled.converters:
            rows = compiled.compiler.apply_converters(rows, compiled.converters)
        for row in rows:
            obj = model.from_db(
                using, compiled.init_list, row[compiled.fields_start : compiled.fields_end]
            )
            for populator in compiled.populators:
                populator.populate(row, obj)
            found.append(obj)
        return found
