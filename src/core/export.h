// Marks a definition of the public C API: exported from libattnccl.so (everything else is hidden).
#pragma once
#define ATTN_EXPORT extern "C" __attribute__((visibility("default")))
