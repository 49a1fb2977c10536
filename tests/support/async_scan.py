"""The scan behind ``tests/unit/test_async_rule.py`` (the async rule, issue 17 item 4;
see that module for what it finds and :mod:`shared.db.offload` for the rule)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ESCAPE", "Index", "sources", "violations"]

SCANNED = ("services", "shared")
ESCAPE = "# async-rule: ok"

# types from outside the scanned code that are the database itself
SESSION, CONNECTION, ENGINE = "<Session>", "<Connection>", "<Engine>"
_EXTERNAL = {
    "sqlmodel.Session": SESSION,
    "sqlmodel.orm.session.Session": SESSION,
    "sqlalchemy.orm.Session": SESSION,
    "sqlalchemy.orm.session.Session": SESSION,
    "sqlalchemy.Connection": CONNECTION,
    "sqlalchemy.engine.Connection": CONNECTION,
    "sqlalchemy.engine.base.Connection": CONNECTION,
    "sqlalchemy.Engine": ENGINE,
    "sqlalchemy.engine.Engine": ENGINE,
    "sqlalchemy.engine.base.Engine": ENGINE,
}
_ENGINE_BLOCKING = {"connect", "begin", "raw_connection"}
# generic wrappers whose first argument is the value's type
_WRAPPERS = {
    "Iterator", "Generator", "ContextManager", "AbstractContextManager", "Optional",
    "Annotated", "Awaitable", "Coroutine", "AsyncIterator", "AsyncGenerator",
    "AbstractAsyncContextManager", "AsyncContextManager", "Final", "ClassVar",
}  # fmt: skip


@dataclass(eq=False)
class FuncInfo:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    module: ModuleInfo
    cls: ClassInfo | None = None
    outer: FuncInfo | None = None  # for a nested def: the function it is defined in

    @property
    def is_async(self) -> bool:
        return isinstance(self.node, ast.AsyncFunctionDef)


@dataclass(eq=False)
class ClassInfo:
    name: str
    node: ast.ClassDef
    module: ModuleInfo
    methods: dict[str, FuncInfo] = field(default_factory=dict)
    #: what each attribute is set to: (annotation, None) or (value, the method setting it)
    attr_nodes: dict[str, list[tuple[ast.expr, FuncInfo | None]]] = field(default_factory=dict)


@dataclass(eq=False)
class ModuleInfo:
    name: str
    path: Path
    tree: ast.Module
    lines: list[str]
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted target
    functions: dict[str, FuncInfo] = field(default_factory=dict)
    classes: dict[str, ClassInfo] = field(default_factory=dict)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _body_nodes(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``nodes``; nested defs, lambdas and classes are yielded but their
    bodies are not (they run wherever they are sent)."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


class Index:
    """Every module, class and function of the scanned tree, and what blocks."""

    def __init__(self, sources: dict[str, tuple[Path, str]]) -> None:
        self.modules: dict[str, ModuleInfo] = {}
        for name, (path, text) in sources.items():
            self.modules[name] = self._load(name, path, text)
        self._blocking: dict[FuncInfo, bool] = {}
        self._attr_types: dict[tuple[ClassInfo, str], object] = {}

    # -- indexing --------------------------------------------------------------------------

    def _load(self, name: str, path: Path, text: str) -> ModuleInfo:
        tree = ast.parse(text, str(path))
        mod = ModuleInfo(name, path, tree, text.splitlines())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.partition(".")[0]
                    mod.imports[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    mod.imports[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                mod.functions[node.name] = FuncInfo(node, mod)
            elif isinstance(node, ast.ClassDef):
                cls = ClassInfo(node.name, node, mod)
                mod.classes[node.name] = cls
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        cls.methods[item.name] = FuncInfo(item, mod, cls)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        cls.attr_nodes[item.target.id] = [(item.annotation, None)]
                for method in cls.methods.values():
                    for sub in _body_nodes(method.node.body):
                        self._note_self_attr(cls, method, sub)
        return mod

    @staticmethod
    def _note_self_attr(cls: ClassInfo, method: FuncInfo, node: ast.AST) -> None:
        """Remember ``self.x: T`` and ``self.x = value`` (annotations win)."""
        target: ast.expr
        if isinstance(node, ast.AnnAssign):
            target, value, annotated = node.target, node.annotation, True
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value, annotated = node.targets[0], node.value, False
        else:
            return
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            stated = cls.attr_nodes.setdefault(target.attr, [])
            if annotated:
                stated.insert(0, (value, None))
            else:
                stated.append((value, method))

    # -- names -----------------------------------------------------------------------------

    def resolve_dotted(self, dotted: str, depth: int = 0) -> object:
        """A dotted name → ModuleInfo, ClassInfo, FuncInfo, an external type or None."""
        if dotted in _EXTERNAL:
            return _EXTERNAL[dotted]
        if dotted in self.modules:
            return self.modules[dotted]
        owner, _, attr = dotted.rpartition(".")
        if depth > 8 or not owner:
            return None
        parent = self.resolve_dotted(owner, depth + 1)
        if isinstance(parent, ModuleInfo):
            return self.module_symbol(parent, attr, depth + 1)
        return None

    def module_symbol(self, mod: ModuleInfo, name: str, depth: int = 0) -> object:
        if name in mod.classes:
            return mod.classes[name]
        if name in mod.functions:
            return mod.functions[name]
        if name in mod.imports:
            return self.resolve_dotted(mod.imports[name], depth + 1)
        return None

    def annotation_type(self, mod: ModuleInfo, node: ast.expr | None) -> object:
        """The type an annotation names (``X | None`` → X, ``Iterator[X]`` → X)."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left = self.annotation_type(mod, node.left)
            return left if left is not None else self.annotation_type(mod, node.right)
        if isinstance(node, ast.Subscript):
            outer = node.value.attr if isinstance(node.value, ast.Attribute) else None
            outer = node.value.id if isinstance(node.value, ast.Name) else outer
            if outer in _WRAPPERS:
                inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
                return self.annotation_type(mod, inner)
            return None
        found = self.expr_symbol(mod, node)
        return found if isinstance(found, ClassInfo | str) else None

    def expr_symbol(self, mod: ModuleInfo, node: ast.expr) -> object:
        """What a bare name or ``module.name`` chain refers to at module level."""
        if isinstance(node, ast.Name):
            return self.module_symbol(mod, node.id)
        if isinstance(node, ast.Attribute):
            owner = self.expr_symbol(mod, node.value)
            if isinstance(owner, ModuleInfo):
                return self.module_symbol(owner, node.attr)
        return None

    # -- types -----------------------------------------------------------------------------

    def class_attr(self, cls: ClassInfo, name: str, depth: int = 0) -> object:
        """The type of ``cls().name``: a method (FuncInfo) or a typed attribute."""
        for klass in self.mro(cls):
            if name in klass.methods:
                return klass.methods[name]
            if name in klass.attr_nodes:
                key = (klass, name)
                if key not in self._attr_types:
                    self._attr_types[key] = None  # cycles resolve to unknown
                    found: object = None
                    for value, method in klass.attr_nodes[name]:  # the first one known
                        if method is None:
                            found = self.annotation_type(klass.module, value)
                        else:
                            found = self.expr_type(value, Scope(self, method), depth + 1)
                        if found is not None:
                            break
                    self._attr_types[key] = found
                return self._attr_types[key]
        return None

    def mro(self, cls: ClassInfo) -> Iterator[ClassInfo]:
        seen: set[int] = set()
        todo = [cls]
        while todo:
            klass = todo.pop(0)
            if id(klass) in seen:
                continue
            seen.add(id(klass))
            yield klass
            for base in klass.node.bases:
                found = self.expr_symbol(klass.module, base)
                if isinstance(found, ClassInfo):
                    todo.append(found)

    def expr_type(self, node: ast.expr, scope: Scope, depth: int = 0) -> object:
        """The stated type of an expression's value (a ClassInfo, external type or None)."""
        if depth > 12:
            return None
        if isinstance(node, ast.Await):
            return self.expr_type(node.value, scope, depth + 1)
        if isinstance(node, ast.Name):
            if node.id in scope.locals:
                return scope.locals[node.id]
            found = self.module_symbol(scope.func.module, node.id)
            return found if isinstance(found, ModuleInfo) else None
        if isinstance(node, ast.Attribute):
            owner = self.expr_type(node.value, scope, depth + 1)
            if isinstance(owner, ClassInfo):
                found = self.class_attr(owner, node.attr, depth + 1)
                return None if isinstance(found, FuncInfo) else found
            if isinstance(owner, ModuleInfo):
                found = self.module_symbol(owner, node.attr)
                return found if isinstance(found, ModuleInfo) else None
            return None
        if isinstance(node, ast.Call):
            callee = self.callee(node, scope, depth + 1)
            if isinstance(callee, ClassInfo | str):
                return callee  # a constructor
            if isinstance(callee, FuncInfo):
                return self.annotation_type(callee.module, callee.node.returns)
        return None

    def callee(self, call: ast.Call, scope: Scope, depth: int = 0) -> object:
        """What a call calls: a FuncInfo, a ClassInfo / external type (constructor), or a
        ``(type, method name)`` pair for a method of an external type."""
        func = call.func
        if isinstance(func, ast.Name):
            if func.id in scope.nested:
                return scope.nested[func.id]
            if func.id in scope.locals:
                return None
            return self.module_symbol(scope.func.module, func.id)
        if isinstance(func, ast.Attribute):
            owner = self.expr_type(func.value, scope, depth + 1)
            if isinstance(owner, ClassInfo):
                found = self.class_attr(owner, func.attr, depth + 1)
                return found if isinstance(found, FuncInfo) else None
            if isinstance(owner, ModuleInfo):
                return self.module_symbol(owner, func.attr)
            if isinstance(owner, str):
                return (owner, func.attr)
        return None

    # -- blocking --------------------------------------------------------------------------

    def blocking_reason(self, call: ast.Call, scope: Scope) -> str | None:
        """Why ``call`` blocks on the database, or None."""
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "session"
            and not call.args
            and _last_name(func.value) in ("db", "_db")
        ):
            return "opens a sync session"
        callee = self.callee(call, scope)
        if callee in (SESSION, CONNECTION):
            return f"opens a {str(callee).strip('<>')}"
        if isinstance(callee, tuple):
            kind, method = callee
            if kind in (SESSION, CONNECTION):
                return f"{kind.strip('<>')}.{method}()"
            if kind == ENGINE and method in _ENGINE_BLOCKING:
                return f"Engine.{method}()"
        if isinstance(callee, FuncInfo) and not callee.is_async and self.blocks(callee):
            return f"calls {_qualname(callee)}(), which uses the database"
        return None

    def unit_of_work(self, func: FuncInfo) -> bool:
        """Whether a plain function's own body opens or uses a session (a unit of database
        work, for ``run_sync``) — not one that only calls such functions among other, maybe
        long, work (a download that records what it fetched stays on ``to_thread``)."""
        scope = Scope(self, func)
        for node in scope.walk():
            if isinstance(node, ast.Call):
                reason = self.blocking_reason(node, scope)
                if reason is not None and not reason.startswith("calls "):
                    return True
        return False

    def blocks(self, func: FuncInfo) -> bool:
        """Whether a plain function makes a blocking database call (transitively)."""
        if func in self._blocking:
            return self._blocking[func]
        self._blocking[func] = False  # recursion: assume not while deciding
        scope = Scope(self, func)
        result = any(
            isinstance(node, ast.Call) and self.blocking_reason(node, scope) is not None
            for node in scope.walk()
        )
        self._blocking[func] = result
        return result


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _qualname(func: FuncInfo) -> str:
    owner = func.cls.name + "." if func.cls else ""
    return f"{func.module.name}.{owner}{func.node.name}"


class Scope:
    """One function's local names: typed parameters, assignments, ``with ... as``."""

    def __init__(self, index: Index, func: FuncInfo) -> None:
        self.index, self.func = index, func
        self.locals: dict[str, object] = dict(func.outer and Scope(index, func.outer).locals or {})
        self.nested: dict[str, FuncInfo] = {}
        args = func.node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        for i, arg in enumerate(params):
            if i == 0 and func.cls is not None and arg.arg in ("self", "cls"):
                self.locals[arg.arg] = func.cls
            else:
                self.locals[arg.arg] = index.annotation_type(func.module, arg.annotation)
        for node in self.walk():
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.nested[node.name] = FuncInfo(node, func.module, func.cls, func)
        for node in self.walk():  # in source order: a later binding wins
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.locals[node.target.id] = index.annotation_type(func.module, node.annotation)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.locals[target.id] = index.expr_type(node.value, self)
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        self.locals[item.optional_vars.id] = index.expr_type(
                            item.context_expr, self
                        )

    def walk(self) -> Iterator[ast.AST]:
        """The body's nodes, nested defs themselves included but not their bodies."""
        return _body_nodes(self.func.node.body)


def violations(index: Index) -> list[str]:
    """``path:line: message`` for each blocking database call in an ``async def``."""
    found: list[str] = []
    for mod in index.modules.values():
        for func in _all_functions(mod):
            if not func.is_async:
                continue
            scope = Scope(index, func)
            for node in scope.walk():
                if not isinstance(node, ast.Call):
                    continue
                reason = index.blocking_reason(node, scope) or _offload_reason(index, node, scope)
                if reason is None:
                    continue
                line = mod.lines[node.lineno - 1]
                if ESCAPE in line:
                    continue
                where = f"{mod.path}:{node.lineno}"
                found.append(f"{where}: async {func.node.name}() {reason}")
    return sorted(set(found))


def _offload_reason(index: Index, call: ast.Call, scope: Scope) -> str | None:
    """Database work sent to a thread some other way than ``run_sync`` (the one helper:
    its cancellation waits for the work, and there is one place to bound or trace it)."""
    func, mod = call.func, scope.func.module
    if isinstance(func, ast.Attribute) and func.attr == "run_in_executor":
        how, sent = "run_in_executor", call.args[1:2]
    elif (isinstance(func, ast.Attribute) and func.attr == "to_thread") or (
        isinstance(func, ast.Name) and mod.imports.get(func.id) == "asyncio.to_thread"
    ):
        how, sent = "to_thread", call.args[:1]
    else:
        return None
    if not sent:
        return None
    target = sent[0]
    if isinstance(target, ast.Call) and _last_name(target.func) == "partial" and target.args:
        target = target.args[0]
    if isinstance(target, ast.Lambda):
        if not isinstance(target.body, ast.Call):
            return None
        target = target.body.func
    callee = index.callee(ast.Call(func=target, args=[], keywords=[]), scope)
    if not isinstance(callee, FuncInfo) or callee.is_async or not index.unit_of_work(callee):
        return None
    return f"sends database work to a thread with {how}: use run_sync"


def _all_functions(mod: ModuleInfo) -> Iterator[FuncInfo]:
    """Every function of a module, nested ones included (with their enclosing scope)."""
    todo = [*mod.functions.values()]
    for cls in mod.classes.values():
        todo.extend(cls.methods.values())
    while todo:
        func = todo.pop()
        yield func
        for node in _body_nodes(func.node.body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                todo.append(FuncInfo(node, mod, func.cls, func))


def sources(root: Path) -> dict[str, tuple[Path, str]]:
    sources = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            sources[_module_name(path, root)] = (path.relative_to(root), path.read_text())
    return sources
