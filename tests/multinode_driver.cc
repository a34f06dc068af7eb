// The driver of the two-node test (cli_test): an actor that needs the "side" resource, which
// only the joined node offers, runs there. Large objects cross between the nodes both ways,
// and once the driver drops its references no copy is left in either node's store.
// Prints what it checked; exits non-zero with the reason on any mismatch.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"
#include "lumen/lumen.h"
#include "node.pb.h"

namespace {

uint8_t Pattern(size_t i, int seed) { return static_cast<uint8_t>((i * 131 + seed) & 0xff); }

uint64_t Checksum(const lumen::Buffer& b) {
  uint64_t sum = 0;
  for (size_t i = 0; i < b.size(); ++i) sum = sum * 31 + b.data()[i];
  return sum;
}

lumen::Buffer Filled(size_t n, int seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = Pattern(i, seed);
  return lumen::Buffer::FromVector(std::move(v));
}

class Holder {
 public:
  static Holder* Create() { return new Holder(); }
  uint64_t Sum(const lumen::Buffer& b) { return Checksum(b); }
  lumen::Buffer Make(int64_t n, int seed) { return Filled(static_cast<size_t>(n), seed); }
};

int Fail(const std::string& why) {
  std::fprintf(stderr, "multinode_driver: %s\n", why.c_str());
  return 1;
}

// Objects in each alive node's store, asked of the nodes themselves.
std::vector<int64_t> ObjectsPerNode(const std::string& gcs, const std::string& token) {
  lumen::rpc::EventLoop loop("stats");
  loop.Start();
  lumen::rpc::Dispatcher none;
  std::vector<int64_t> out;
  auto conn = lumen::rpc::Connect(&loop, gcs, &none, token);
  lumen::proto::NodeList nodes;
  if (conn.ok() &&
      (*conn)->CallSync(lumen::rpc::kGetAllNodes, lumen::proto::Empty(), &nodes, 5000).ok()) {
    for (const auto& n : nodes.nodes()) {
      if (!n.alive()) continue;
      auto nc = lumen::rpc::Connect(&loop, n.address().tcp_address(), &none, token);
      lumen::proto::NodeStats s;
      if (nc.ok() &&
          (*nc)->CallSync(lumen::rpc::kNodeStats, lumen::proto::Empty(), &s, 5000).ok()) {
        out.push_back(s.num_objects());
      }
      if (nc.ok()) (*nc)->Close(lumen::Status::OK());
    }
  }
  if (conn.ok()) (*conn)->Close(lumen::Status::OK());
  loop.Stop();
  return out;
}

}  // namespace

LUMEN_REMOTE(Holder::Create, &Holder::Sum, &Holder::Make);

int main(int argc, char** argv) {
  lumen::Init(argc, argv);
  lumen::ActorOptions o;
  o.resources = {{"side", 1}};
  auto holder = lumen::Actor(Holder::Create).Options(o).Remote();

  constexpr size_t kBig = 24 << 20;  // well above the inline limit: lives in a node's store
  {
    auto there = lumen::Put(Filled(kBig, 3));
    uint64_t sum = lumen::Get(holder.Task(&Holder::Sum).Remote(there));
    if (sum != Checksum(Filled(kBig, 3))) return Fail("the other node read different bytes");
    std::printf("a %zu-byte object put here was read on the other node\n", kBig);

    lumen::Buffer back = lumen::Get(holder.Task(&Holder::Make).Remote(int64_t{20 << 20}, 7));
    if (back.size() != (20u << 20) || Checksum(back) != Checksum(Filled(20 << 20, 7))) {
      return Fail("the object made on the other node arrived different");
    }
    std::printf("a %zu-byte object made on the other node was read here\n", back.size());
  }  // every reference dropped

  const char* gcs = std::getenv("LUMEN_ADDRESS");
  const char* token = std::getenv("LUMEN_TOKEN");
  if (!gcs || !token) return Fail("needs LUMEN_ADDRESS and LUMEN_TOKEN");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::vector<int64_t> objects;
  while (std::chrono::steady_clock::now() < deadline) {  // frees are one-way messages: poll
    objects = ObjectsPerNode(gcs, token);
    bool empty = objects.size() == 2;
    for (int64_t n : objects) empty = empty && n == 0;
    if (empty) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string counts;
  for (int64_t n : objects) counts += " " + std::to_string(n);
  if (objects.size() != 2) return Fail("expected 2 nodes, saw" + counts);
  for (int64_t n : objects) {
    if (n != 0) return Fail("objects left in the node stores:" + counts);
  }
  std::printf("no copy left on either node\n");
  lumen::Shutdown();
  return 0;
}
