// Argument checks of the framework-tensor calls (attncclAttnForwardEx / BackwardEx, desc->batch):
// each bad stride, batch, sink pointer and overlapping output is refused with
// attncclInvalidArgument and a message naming the field and its value; the outputs are not
// touched and the communicator stays usable. Also: a 0.1 descriptor (its size ends before
// `batch`) still works, and the batch of the 0.1 calls is contiguous [B][T][H][D].
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "attnccl.h"
#include "support/sink_reference.h"
#include "support/tensors.h"

namespace attnccl_test {
namespace {

constexpr int kT = 6, kHq = 2, kHkv = 1, kD = 8;

class FrameworkArgs : public ::testing::Test {
 protected:
  void SetUp() override {
    attncclUniqueId id;
    ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
    ASSERT_EQ(attncclCommInitRank(&comm_, 1, id, 0, nullptr), attncclSuccess) << attncclGetLastError(nullptr);
    d_.seqLen = kT;
    d_.numHeadsQ = kHq;
    d_.numHeadsKV = kHkv;
    d_.headDim = kD;
    d_.causal = 1;
    const int W = (kHq + 2 * kHkv) * kD;
    qkv_ = randomFloats(kT * W, 1, -1.f, 1.f);
    out_.assign(kT * kHq * kD, 5.f);
    lse_.assign(kT * kHq, 5.f);
    t_.q = qkv_.data();
    t_.k = qkv_.data() + kHq * kD;
    t_.v = qkv_.data() + (kHq + kHkv) * kD;
    t_.qStrides = {0, W, kD};
    t_.kStrides = {0, W, kD};
    t_.vStrides = {0, W, kD};
    t_.out = out_.data();
    t_.lse = lse_.data();
  }
  void TearDown() override {
    if (comm_) attncclCommDestroy(comm_);
  }
  // The forward is refused with a message holding `needle`; nothing was written.
  void expectRefused(const attncclAttnTensors_t& t, const attncclAttnDesc_t& d, const char* needle) {
    std::vector<float> outBefore = out_, lseBefore = lse_;
    EXPECT_EQ(attncclAttnForwardEx(&t, &d, attncclAlgoRing, comm_, nullptr), attncclInvalidArgument) << needle;
    const std::string msg = attncclGetLastError(comm_);
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected to contain: " << needle;
    EXPECT_EQ(0, memcmp(outBefore.data(), out_.data(), out_.size() * sizeof(float)));
    EXPECT_EQ(0, memcmp(lseBefore.data(), lse_.data(), lse_.size() * sizeof(float)));
  }
  attncclComm_t comm_ = nullptr;
  attncclAttnDesc_t d_ = ATTNCCL_ATTN_DESC_INITIALIZER;
  attncclAttnTensors_t t_ = ATTNCCL_ATTN_TENSORS_INITIALIZER;
  std::vector<float> qkv_, out_, lse_;
};

TEST_F(FrameworkArgs, PackedViewsAreAccepted) {
  ASSERT_EQ(attncclAttnForwardEx(&t_, &d_, attncclAlgoRing, comm_, nullptr), attncclSuccess)
      << attncclGetLastError(comm_);
  // The communicator stays usable after every refusal below (each test re-runs a good call).
  for (float x : out_) EXPECT_TRUE(std::isfinite(x));
}

TEST_F(FrameworkArgs, StructAndStridesAreChecked) {
  attncclAttnTensors_t t = t_;
  t.magic = 1;
  expectRefused(t, d_, "tensors->magic 0x1");
  t = t_;
  t.size = 16;
  expectRefused(t, d_, "tensors->size 16");
  t = t_;
  t.kStrides.token = -3;
  expectRefused(t, d_, "tensors->kStrides.token is -3");
  t = t_;
  t.qStrides.head = 0;
  expectRefused(t, d_, "tensors->qStrides.head is 0 but that dimension holds 2 elements");
  t = t_;
  t.outStrides = {0, kD, kD};  // token stride inside a row of two heads: rows overlap
  expectRefused(t, d_, "makes the output out overlap itself");
  t = t_;
  t.lseStrides = {0, 2, kT};
  expectRefused(t, d_, "tensors->lseStrides.token is 2");
  t = t_;
  t.q = nullptr;
  expectRefused(t, d_, "tensors->q is NULL");
  // After the refusals the communicator still serves a good call.
  EXPECT_EQ(attncclAttnForwardEx(&t_, &d_, attncclAlgoRing, comm_, nullptr), attncclSuccess);
}

TEST_F(FrameworkArgs, OverlappingOutputsAreRefused) {
  attncclAttnTensors_t t = t_;
  t.out = const_cast<void*>(t.q);  // out aliasing q's columns of the packed buffer
  t.outStrides = t.qStrides;
  expectRefused(t, d_, "output tensors->out");
  t = t_;
  t.lse = reinterpret_cast<float*>(const_cast<void*>(t.k));
  expectRefused(t, d_, "output tensors->lse");
  // dq, dk, dv as slices of one packed buffer are fine; dq over k's columns is not.
  const int W = (kHq + 2 * kHkv) * kD;
  std::vector<float> dqkv(kT * W), dout(kT * kHq * kD, 0.5f);
  std::vector<float> dsinks(kHq), sinks(kHq, 0.25f);
  ASSERT_EQ(attncclAttnForwardEx(&t_, &d_, attncclAlgoRing, comm_, nullptr), attncclSuccess);
  attncclAttnTensors_t b = t_;
  b.dout = dout.data();
  b.dq = dqkv.data();
  b.dk = dqkv.data() + kHq * kD;
  b.dv = dqkv.data() + (kHq + kHkv) * kD;
  b.dqStrides = b.dkStrides = b.dvStrides = {0, W, kD};
  EXPECT_EQ(attncclAttnBackwardEx(&b, &d_, attncclAlgoRing, comm_, nullptr), attncclSuccess)
      << attncclGetLastError(comm_);
  attncclAttnTensors_t bad = b;
  bad.dq = dqkv.data() + kHq * kD;  // on dk's columns
  bad.dqStrides = {0, W, kHkv * kD};
  EXPECT_EQ(attncclAttnBackwardEx(&bad, &d_, attncclAlgoRing, comm_, nullptr), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(comm_)).find("output tensors->dq"), std::string::npos)
      << attncclGetLastError(comm_);
  bad = b;
  bad.dsinks = dsinks.data();
  EXPECT_EQ(attncclAttnBackwardEx(&bad, &d_, attncclAlgoRing, comm_, nullptr), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(comm_)).find("tensors->sinks is NULL"), std::string::npos)
      << attncclGetLastError(comm_);
  bad.sinks = sinks.data();
  bad.dsinks = const_cast<float*>(static_cast<const float*>(bad.q));
  EXPECT_EQ(attncclAttnBackwardEx(&bad, &d_, attncclAlgoRing, comm_, nullptr), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(comm_)).find("tensors->dsinks"), std::string::npos)
      << attncclGetLastError(comm_);
}

TEST_F(FrameworkArgs, BatchIsChecked) {
  attncclAttnDesc_t d = d_;
  d.batch = -2;
  expectRefused(t_, d, "desc->batch -2");
}

// A 0.1 program's descriptor ends before `batch`: it is one sequence, whatever lies beyond.
TEST_F(FrameworkArgs, ShortDescriptorTakesTheDefaultBatch) {
  struct {
    attncclAttnDesc_t d;
  } holder;
  holder.d = d_;
  holder.d.size = offsetof(attncclAttnDesc_t, batch);
  holder.d.batch = 12345;  // not part of a 0.1 descriptor: must be ignored
  std::vector<float> q(kT * kHq * kD), k(kT * kHkv * kD), v(k.size()), out(q.size());
  q = randomFloats(q.size(), 3, -1.f, 1.f);
  k = randomFloats(k.size(), 4, -1.f, 1.f);
  v = randomFloats(v.size(), 5, -1.f, 1.f);
  ASSERT_EQ(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), nullptr, &holder.d, attncclAlgoRing, comm_,
                               nullptr),
            attncclSuccess)
      << attncclGetLastError(comm_);
  SinkRef r = refAttentionWithSinks(d_, toDouble(q), toDouble(k), toDouble(v), {}, {});
  EXPECT_LE(relNormError(toDouble(out), r.out), tolerance(attncclFloat32));
}

// The 0.1 calls with batch > 1: contiguous [B][T][H][D] tensors and LSE [B][Hq][T]; each sequence
// is its own attention (nothing crosses sequences).
TEST_F(FrameworkArgs, OldCallsTakeAContiguousBatch) {
  const int B = 3;
  attncclAttnDesc_t d = d_;
  d.batch = B;
  const size_t qn = kT * kHq * kD, kn = kT * kHkv * kD;
  std::vector<float> q = randomFloats(B * qn, 6, -1.f, 1.f), k = randomFloats(B * kn, 7, -1.f, 1.f),
                     v = randomFloats(B * kn, 8, -1.f, 1.f), out(B * qn), lse(B * kT * kHq);
  poison(out);
  poison(lse);
  ASSERT_EQ(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), lse.data(), &d, attncclAlgoAuto, comm_,
                               nullptr),
            attncclSuccess)
      << attncclGetLastError(comm_);
  for (int b = 0; b < B; ++b) {
    auto slice = [](const std::vector<float>& x, size_t n, int b) {
      return std::vector<double>(x.begin() + b * n, x.begin() + (b + 1) * n);
    };
    SinkRef r = refAttentionWithSinks(d_, slice(q, qn, b), slice(k, kn, b), slice(v, kn, b), {}, {});
    EXPECT_LE(relNormError(slice(out, qn, b), r.out), tolerance(attncclFloat32)) << "sequence " << b;
    EXPECT_LE(maxAbsError(slice(lse, kT * kHq, b), r.lse), kLseTolerance) << "sequence " << b;
  }
}

}  // namespace
}  // namespace attnccl_test
