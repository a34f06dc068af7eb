// How values cross process boundaries: msgpack (https://msgpack.org) through msgpack-c, with
// Lumen's adaptors for ObjectRef, ActorHandle and Buffer, and a compact binary encoding for
// vectors of numbers.
//
// User structs become serialisable with one line inside the struct:
//
//   struct Point { double x, y; std::string label; LUMEN_SERIALIZE(x, y, label); };
//
// Standard containers, strings, arithmetic types, std::optional, std::tuple, std::map, ...
// work out of the box. A lumen::Buffer travels without being copied (see buffer.h).
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include "lumen/buffer.h"
#include "lumen/errors.h"
#include "lumen/internal/runtime.h"

#define LUMEN_SERIALIZE(...) MSGPACK_DEFINE(__VA_ARGS__)

namespace lumen::internal {

std::string Demangle(const char* mangled);
template <class T>
std::string TypeName() {
  return Demangle(typeid(T).name());
}

// Set while serialising a value: collects ObjectRefs met on the way.
struct SerializeContext {
  std::vector<ObjectID> refs;
};
SerializeContext*& CurrentSerializeContext();

// Set while deserialising from a stored value: lets Buffers point into it.
struct DeserializeContext {
  const uint8_t* begin = nullptr;
  const uint8_t* end = nullptr;
  std::shared_ptr<const void> holder;
};
DeserializeContext*& CurrentDeserializeContext();

// A per-thread msgpack zone reused across decodes (no allocation per value); null while in use
// (nested decodes get their own).
msgpack::zone* AcquireZone();
void ReleaseZone(msgpack::zone* zone);

struct StringWriter {
  std::string* out;
  void write(const char* data, size_t size) { out->append(data, size); }
};

template <class T>
struct IsBuffer : std::is_same<std::decay_t<T>, Buffer> {};

// ---- compile-time check: user structs need LUMEN_SERIALIZE -------------------------------
// A plain struct (an aggregate) without LUMEN_SERIALIZE, alone or inside a standard container,
// would fail deep inside msgpack-c ("has no member named 'msgpack_unpack'" under pages of
// notes). LacksSerialize finds it first; Serialize and Deserialize then stop with one message.
template <class T>
concept HasMsgpackDefine = requires(const T& v, msgpack::packer<StringWriter>& p) {
  v.msgpack_pack(p);
};

template <class T>
struct LacksSerialize {
  // The offending type itself: an aggregate class other than std::array without the macro.
  static constexpr bool value =
      std::is_class_v<T> && std::is_aggregate_v<T> && !HasMsgpackDefine<T>;
};
template <class T>
struct LacksSerialize<const T> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::vector<T, R...>> : LacksSerialize<T> {};
template <class T, size_t N>
struct LacksSerialize<std::array<T, N>> : LacksSerialize<T> {};
template <class T>
struct LacksSerialize<std::optional<T>> : LacksSerialize<T> {};
template <class T>
struct LacksSerialize<std::shared_ptr<T>> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::unique_ptr<T, R...>> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::list<T, R...>> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::deque<T, R...>> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::set<T, R...>> : LacksSerialize<T> {};
template <class T, class... R>
struct LacksSerialize<std::unordered_set<T, R...>> : LacksSerialize<T> {};
template <class K, class V, class... R>
struct LacksSerialize<std::map<K, V, R...>> {
  static constexpr bool value = LacksSerialize<K>::value || LacksSerialize<V>::value;
};
template <class K, class V, class... R>
struct LacksSerialize<std::unordered_map<K, V, R...>> {
  static constexpr bool value = LacksSerialize<K>::value || LacksSerialize<V>::value;
};
template <class K, class V>
struct LacksSerialize<std::pair<K, V>> {
  static constexpr bool value = LacksSerialize<K>::value || LacksSerialize<V>::value;
};
template <class... T>
struct LacksSerialize<std::tuple<T...>> {
  static constexpr bool value = (LacksSerialize<T>::value || ...);
};

// Instantiated only for a type that cannot be serialised: the compiler names it here
// ("required from ... TypeNeedsLumenSerialize<Point>").
template <class T>
struct TypeNeedsLumenSerialize {
  static_assert(!LacksSerialize<T>::value,
                "a value passed to or returned from a task, an actor method or lumen::Put must "
                "be serialisable: add LUMEN_SERIALIZE(field1, field2, ...) inside the struct "
                "named in TypeNeedsLumenSerialize<...> (or in a container of it) above");
  static constexpr bool ok = !LacksSerialize<T>::value;
};

template <class T>
SerializedValue SerializeChecked(const T& value);

template <class T>
SerializedValue Serialize(const T& value) {
  if constexpr (TypeNeedsLumenSerialize<T>::ok) {
    return SerializeChecked(value);
  } else {
    std::abort();  // (does not compile: see TypeNeedsLumenSerialize)
  }
}

template <class T>
SerializedValue SerializeChecked(const T& value) {
  SerializedValue out;
  if constexpr (IsBuffer<T>::value) {
    out.format = ValueFormat::kRaw;
    out.raw = value;
  } else {
    SerializeContext ctx;
    SerializeContext* saved = CurrentSerializeContext();
    CurrentSerializeContext() = &ctx;
    try {
      StringWriter w{&out.data};
      msgpack::packer<StringWriter> pk(w);
      pk.pack(value);
    } catch (...) {
      CurrentSerializeContext() = saved;
      throw;
    }
    CurrentSerializeContext() = saved;
    out.nested_refs = std::move(ctx.refs);
  }
  return out;
}

inline SerializedValue SerializeNil() {
  SerializedValue out;
  StringWriter w{&out.data};
  msgpack::packer<StringWriter> pk(w);
  pk.pack_nil();
  return out;
}

inline bool ZeroCopyBinary(msgpack::type::object_type type, std::size_t, void*) {
  return type == msgpack::type::BIN || type == msgpack::type::EXT;
}

template <class T>
T DeserializeChecked(const ValueView& view);

template <class T>
T Deserialize(const ValueView& view) {
  if constexpr (TypeNeedsLumenSerialize<T>::ok) {
    return DeserializeChecked<T>(view);
  } else {
    std::abort();  // (does not compile: see TypeNeedsLumenSerialize)
  }
}

template <class T>
T DeserializeChecked(const ValueView& view) {
  if constexpr (IsBuffer<T>::value) {
    if (view.format == ValueFormat::kRaw) {
      return Buffer(view.data, view.size, view.holder);
    }
  } else {
    if (view.format == ValueFormat::kRaw) {
      throw TypeError("the value holds raw bytes (a lumen::Buffer); it cannot be read as " +
                      TypeName<T>());
    }
  }
  DeserializeContext ctx{view.data, view.data + view.size, view.holder};
  DeserializeContext* saved = CurrentDeserializeContext();
  CurrentDeserializeContext() = &ctx;
  msgpack::zone* shared = AcquireZone();
  std::unique_ptr<msgpack::zone> own;
  msgpack::zone* zone = shared;
  if (!zone) {
    own = std::make_unique<msgpack::zone>();
    zone = own.get();
  }
  struct Restore {
    DeserializeContext* saved;
    msgpack::zone* shared;
    ~Restore() {
      CurrentDeserializeContext() = saved;
      if (shared) ReleaseZone(shared);
    }
  } restore{saved, shared};
  try {
    std::size_t off = 0;
    msgpack::object obj = msgpack::unpack(*zone, reinterpret_cast<const char*>(view.data),
                                          view.size, off, ZeroCopyBinary);
    return obj.as<T>();
  } catch (const lumen::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw TypeError("cannot decode a value of type " + TypeName<T>() + " (" + e.what() + ")");
  }
}

}  // namespace lumen::internal

// ---- msgpack adaptors ------------------------------------------------------------------------
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <>
  struct pack<lumen::Buffer> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::Buffer& b) const {
      if (b.size() > 0xffffffffu)
        throw std::length_error("lumen::Buffer over 4 GiB inside a value");
      o.pack_bin(static_cast<uint32_t>(b.size()));
      o.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
      return o;
    }
  };

  template <>
  struct convert<lumen::Buffer> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::Buffer& b) const {
      if (o.type != msgpack::type::BIN) throw msgpack::type_error();
      auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
      auto* ctx = lumen::internal::CurrentDeserializeContext();
      if (ctx && ctx->holder && p >= ctx->begin && p + o.via.bin.size <= ctx->end) {
        b = lumen::Buffer(p, o.via.bin.size, ctx->holder);  // zero-copy view
      } else {
        b = lumen::Buffer::Copy(p, o.via.bin.size);
      }
      return o;
    }
  };

// Vectors of numbers travel as one binary blob (memcpy) instead of one msgpack item each.
#define LUMEN_MSGPACK_NUMERIC_VECTOR(T)                                                       \
  template <>                                                                                 \
  struct pack<std::vector<T>> {                                                               \
    template <class Stream>                                                                   \
    packer<Stream>& operator()(packer<Stream>& o, const std::vector<T>& v) const {            \
      size_t bytes = v.size() * sizeof(T);                                                    \
      if (bytes > 0xffffffffu) throw std::length_error("vector over 4 GiB inside a value");   \
      o.pack_bin(static_cast<uint32_t>(bytes));                                               \
      o.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<uint32_t>(bytes)); \
      return o;                                                                               \
    }                                                                                         \
  };                                                                                          \
  template <>                                                                                 \
  struct convert<std::vector<T>> {                                                            \
    const msgpack::object& operator()(const msgpack::object& o, std::vector<T>& v) const {    \
      if (o.type == msgpack::type::BIN) {                                                     \
        if (o.via.bin.size % sizeof(T) != 0) throw msgpack::type_error();                     \
        v.resize(o.via.bin.size / sizeof(T));                                                 \
        if (!v.empty()) std::memcpy(v.data(), o.via.bin.ptr, o.via.bin.size);                 \
      } else if (o.type == msgpack::type::ARRAY) {                                            \
        v.resize(o.via.array.size);                                                           \
        for (uint32_t i = 0; i < o.via.array.size; ++i) o.via.array.ptr[i].convert(v[i]);     \
      } else {                                                                                \
        throw msgpack::type_error();                                                          \
      }                                                                                       \
      return o;                                                                               \
    }                                                                                         \
  };

  LUMEN_MSGPACK_NUMERIC_VECTOR(double)
  LUMEN_MSGPACK_NUMERIC_VECTOR(float)
  LUMEN_MSGPACK_NUMERIC_VECTOR(int16_t)
  LUMEN_MSGPACK_NUMERIC_VECTOR(uint16_t)
  LUMEN_MSGPACK_NUMERIC_VECTOR(int32_t)
  LUMEN_MSGPACK_NUMERIC_VECTOR(uint32_t)
  LUMEN_MSGPACK_NUMERIC_VECTOR(int64_t)
  LUMEN_MSGPACK_NUMERIC_VECTOR(uint64_t)
#undef LUMEN_MSGPACK_NUMERIC_VECTOR

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack
