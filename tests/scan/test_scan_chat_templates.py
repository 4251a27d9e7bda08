
"""Chat templates judged by Jinja's own parser (issue 13, "What to build" 3: GGUF).

Real templates in the style of the model families people ship as GGUF (written inline, nothing
downloaded) must stay clean; a corpus of server-side template injections -- the known Jinja2
sandbox escapes and the ways to build a dunder name without writing one -- must all be refused.
No template is ever rendered: the tests also check that rendering hooks are never reached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chat_templates import (
    CHATML,
    QWEN3_THINK,
    QWEN25_TOOLS,
    REAL,
)

from chainproof.scan import scan_path
from chainproof.scan._parsers import check_chat_template

jinja2 = pytest.importorskip("jinja2")

# ---- server-side template injections ------------------------------------------------------------

SSTI = {
    # the classic sandbox escapes
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner-globals": "{{ joiner.__init__.__globals__['os'].popen('id').read() }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "self-context": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "tuple-class": "{{ ().__class__.__base__.__subclasses__() }}",
    "list-class": "{{ [].__class__ }}",
    "request-attr": "{{ request|attr('application')|attr('__globals__') }}",
    "namespace-init": "{{ namespace.__init__.__globals__ }}",
    "range-attr": "{{ range.__self__ }}",
    # attr filter, constant and escaped
    "attr-dunder": "{{ ''|attr('__class__') }}",
    "attr-hex-escape": "{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "attr-unicode-escape": "{{ ()|attr('\\u005f\\u005fclass\\u005f\\u005f') }}",
    # dunder names built in a variable, then used
    "set-tilde-getitem": "{% set a = '__cla' ~ 'ss__' %}{{ x[a] }}",
    "set-plus-getitem": "{% set a = '__cla' + 'ss__' %}{{ messages[a] }}",
    "attr-computed": "{% set n = '_' * 2 ~ 'class' ~ '_' * 2 %}{{ messages|attr(n) }}",
    "dict-join": "{{ ()|attr(dict(__cla=1,ss__=2)|join) }}",
    "list-join": "{{ ()|attr(['_','_','class','_','_']|join) }}",
    "format-filter": "{{ messages[('%c%c%s%c%c'|format(95,95,'class',95,95))] }}",
    "format-filter-attr": "{{ []|attr('%s%sclass%s%s'|format('_','_','_','_')) }}",
    "str-format-method": "{{ '{0.__class__}'.format(messages) }}",
    "str-format-plain-name": "{{ '{0.mro}'.format(messages) }}",
    "tilde-across-sets": (
        "{% set a = '_' %}{% set b = a ~ a ~ 'globals' %}{% set c = b ~ a ~ a %}"
        "{{ raise_exception[c] }}"),
    "namespace-builder": (
        "{% set ns = namespace(k='') %}{% for c in ['_','_','class','_','_'] %}"
        "{% set ns.k = ns.k ~ c %}{% endfor %}{{ messages[ns.k] }}"),
    "for-key-building": (
        "{% for k in ['__cla' ~ 'ss__'] %}{{ messages[k] }}{% endfor %}"),
    "for-over-dict-keys": "{% for k in {'__class__': 1} %}{{ ()[k] }}{% endfor %}",
    "getitem-by-attribute": "{{ messages[message.role] }}",
    "range-name-reassigned": (
        "{% for i in range(2) %}{% endfor %}{% set i = '__class__' %}{{ ()[i] }}"),
    "range-name-shadowed": (
        "{% for i in range(2) %}{% for i in ['__class__'] %}{{ ()[i] }}{% endfor %}{% endfor %}"),
    "lower-builds-dunder": "{{ ()['__CLASS__'|lower] }}",
    "reverse-builds-dunder": "{{ ()['__ssalc__'|reverse|join] }}",
    "replace-builds-dunder": "{{ ()['XXclassXX'|replace('X','_')] }}",
    "string-slice-key": "{{ ()['x__class__x'[1:-1]] }}",
    # attribute filters reaching dunders through dotted names
    "map-attribute-dotted": "{{ messages|map(attribute='role.__class__')|list }}",
    "map-attr-filter": "{{ messages|map('attr', '__class__')|list }}",
    "map-computed-filter": "{% set f = 'attr' %}{{ messages|map(f, 'x')|list }}",
    "sort-attribute": "{{ messages|sort(attribute='__class__') }}",
    "groupby-dotted": "{{ messages|groupby('a.__init__') }}",
    "selectattr-computed": "{{ messages|selectattr(name)|list }}",
    "join-attribute": "{{ messages|join(attribute='__class__') }}",
    "unknown-filter": "{{ x|evil }}",
    # calls
    "method-pop": "{{ messages.pop() }}",
    "method-mro": "{{ messages.mro() }}",
    "computed-callable": "{{ messages[0]() }}",
    "call-result-call": "{{ x.get('a')() }}",
    "get-dunder": "{{ x.get('__class__') }}",
    "dyn-kwargs": "{{ namespace(**kw) }}",
    "unknown-function": "{{ eval('1') }}",
    "import-os": "{{ __import__('os') }}",
    # template machinery
    "include": "{% include 'other.j2' %}",
    "import": "{% import 'macros.j2' as m %}{{ m.x() }}",
    "from-import": "{% from 'macros.j2' import x %}",
    "extends": "{% extends 'base.j2' %}",
    "block-self": "{% block b %}{% endblock %}{{ self.b() }}",
    "call-block": "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}x{% endcall %}",
    "underscore-name": "{{ _x }}",
    "config": "{{ config.items() }}",
    "syntax-error": "{% for %}",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_chat_templates_are_clean(name: str) -> None:
    assert check_chat_template(REAL[name], "t") == []


@pytest.mark.parametrize("name", sorted(SSTI))
def test_template_injections_refused(name: str) -> None:
    found = check_chat_template(SSTI[name], "metadata tokenizer.chat_template")
    assert found, f"{name} passed"
    assert all(c.kind == "chat_template" and c.reason.startswith("metadata tokenizer.chat_template")
               for c in found)


@pytest.mark.parametrize("name", sorted(set(SSTI) - {"extends"}))
def test_injections_refused_inside_a_real_template(name: str) -> None:
    """An injection appended to a real template is still found (the rest stays clean);
    ``extends`` must come first in a template, so it is prepended instead."""
    assert check_chat_template(QWEN25_TOOLS + SSTI[name], "t")


def test_extends_refused_before_a_real_template() -> None:
    assert check_chat_template(SSTI["extends"] + QWEN25_TOOLS, "t")


def test_the_template_is_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging compiles and renders nothing: Jinja's code generator is never entered."""
    import jinja2.compiler
    import jinja2.environment

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("template compiled or rendered")

    monkeypatch.setattr(jinja2.environment.Environment, "compile", boom)
    monkeypatch.setattr(jinja2.environment.Template, "render", boom)
    monkeypatch.setattr(jinja2.compiler.CodeGenerator, "visit_Template", boom)
    for template in [*REAL.values(), *SSTI.values()]:
        check_chat_template(template, "t")


def test_deeply_nested_template_is_refused_not_a_crash() -> None:
    deep = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    found = check_chat_template(deep, "t")
    assert found and found[0].name in ("syntax", "depth")


gguf = pytest.importorskip("gguf")


def _gguf(path: Path, template: str, extra: dict[str, str] | None = None) -> Path:
    w = gguf.GGUFWriter(path, "llama")
    w.add_chat_template(template)
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    w.add_tensor("w", np.ones((2, 3), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_with_real_template_clean_and_named_template_injection_refused(
    tmp_path: Path,
) -> None:
    clean = _gguf(tmp_path / "ok.gguf", QWEN3_THINK)
    before = clean.read_bytes()
    r = scan_path(clean).files[0]
    assert (r.format, r.verdict) == ("gguf", "clean"), r
    assert clean.read_bytes() == before
    # the default template is clean, a named one (tokenizer.chat_template.<name>) is not
    bad = _gguf(tmp_path / "bad.gguf", CHATML,
                {"tokenizer.chat_template.tool_use": SSTI["set-tilde-getitem"]})
    before = bad.read_bytes()
    r = scan_path(bad).files[0]
    assert r.verdict == "malicious", r
    assert {f.opcode for f in r.findings} == {"chat_template"}
    assert "tokenizer.chat_template.tool_use" in r.findings[0].reason
    assert bad.read_bytes() == before
