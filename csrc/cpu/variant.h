// variant.h -- the tables of named CPU kernel variants that every op's planner picks from.
//
// An op direction with several algorithms (conv2d's grad weight, max_pool2d's forward, ...) lists
// them in a table of Variant entries, each with one uniform signature Fn.  `runs(s)` says whether
// the variant computes shape s at all (not whether it is the fastest there); the op's planner picks
// one by name from the shape.  Tests and benchmarks run any variant by name through the op's
// environment variable (CNNEXT_CONV2D_GW, CNNEXT_MAX_POOL2D, ...), read per call by forced():
// a name that is no variant of the op, or whose variant does not run on the call, raises instead of
// silently running another one.
#pragma once
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cnnext::cpu {

template <typename Fn, typename Shape>
struct Variant {
  const char* name;
  bool (*runs)(const Shape& s);
  Fn fn;
};

// The `runs` of a variant that computes every shape.
template <typename Shape>
bool any_shape(const Shape&) { return true; }

// The entry called `name`, nullptr if the table has none.
template <typename V, std::size_t n>
const V* find_variant(const V (&table)[n], const char* name) {
  for (const V& v : table)
    if (std::strcmp(v.name, name) == 0) return &v;
  return nullptr;
}

// The planner's pick: a name the planner spells itself, so it is in the table.
template <typename V, std::size_t n>
const V& by_name(const V (&table)[n], const char* name) {
  const V* v = find_variant(table, name);
  return v ? *v : table[0];
}

// The variant that environment variable `env` names for shape s, nullptr when `env` is unset or
// empty, or names a variant of one of the op's other directions (`others`: their tables), which
// this call's planner then ignores.  Throws std::runtime_error ("<op>: <env>=<name> ...") when the
// name is in none of the tables, or its variant does not run on s.
template <typename V, std::size_t n, typename Shape, typename... Others>
const V* forced(const V (&table)[n], const char* op, const char* env, const Shape& s, const Others&... others) {
  const char* name = std::getenv(env);
  if (!name || !*name) return nullptr;
  const V* v = find_variant(table, name);
  if (v && v->runs(s)) return v;
  if (!v && (find_variant(others, name) || ...)) return nullptr;
  std::string names;
  for (const V& e : table) names += std::string(names.empty() ? "" : ", ") + e.name;
  throw std::runtime_error(std::string(op) + ": " + env + "=" + name +
                           (v ? " does not run on this call" : " names no variant of this op") +
                           " (variants here: " + names + ")");
}

}  // namespace cnnext::cpu
