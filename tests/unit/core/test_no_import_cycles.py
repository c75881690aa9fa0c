"""No module of bbackup imports itself back, however indirectly: import order then never
matters, and each layer can be read (and loaded) without the ones that use it."""

from __future__ import annotations

import grimp


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm,
    iterative), each sorted; a module that imports itself counts too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}

    for root in sorted(imports):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            module, position = work.pop()
            if position == 0:
                index[module] = low[module] = len(index)
                stack.append(module)
                on_stack.add(module)
            targets = imports.get(module, [])
            if position < len(targets):
                work.append((module, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1 or module in imports.get(module, []):
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
    return cycles


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One cycle through the component's first module, as `a -> b -> a`."""
    first, members = component[0], set(component)
    for target in sorted(graph.find_modules_directly_imported_by(first) & members):
        chain = graph.find_shortest_chain(importer=target, imported=first)
        if chain:
            return " -> ".join((first, *chain))
    return ", ".join(component)  # pragma: no cover


def test_no_module_of_bbackup_is_part_of_an_import_cycle() -> None:
    graph = grimp.build_graph("bbackup", cache_dir=None)
    cycles = [describe(graph, c) for c in import_cycles(graph)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.c", imported="p.d")

    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]
    assert describe(graph, ["p.a", "p.b", "p.c"]) == "p.a -> p.b -> p.c -> p.a"
