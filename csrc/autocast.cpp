// Autocast with a chosen dtype, for CPU and CUDA: what tch 0.24 cannot do (its `autocast`
// toggles CUDA autocast only, always in libtorch's default dtype, fp16).
//
// Device types and dtypes cross the boundary as libtorch's own enum values
// (c10::DeviceType, c10::ScalarType: tch's `Kind::c_int`). Every function returns 0 on success
// and otherwise 1 with the message copied into `err` (NUL-terminated, cut to `err_len`).
// The state is thread-local in libtorch, as in PyTorch.
#include <ATen/autocast_mode.h>

#include <cstring>
#include <exception>

namespace {

c10::DeviceType device_type(int device) {
  auto t = static_cast<c10::DeviceType>(device);
  TORCH_CHECK(t == c10::DeviceType::CPU || t == c10::DeviceType::CUDA,
              "autocast: unsupported device type ", device);
  return t;
}

c10::ScalarType scalar_type(int dtype) {
  auto s = static_cast<c10::ScalarType>(dtype);
  TORCH_CHECK(s == c10::ScalarType::Half || s == c10::ScalarType::BFloat16 ||
                  s == c10::ScalarType::Float,
              "autocast: unsupported dtype ", dtype);
  return s;
}

template <typename F>
int guarded(char *err, size_t err_len, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception &e) {
    if (err != nullptr && err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return 1;
  }
}

}  // namespace

extern "C" {

// The device's current autocast flag and dtype.
int studioize_autocast_state(int device, bool *enabled, int *dtype, char *err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(device);
    *enabled = at::autocast::is_autocast_enabled(t);
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(t));
  });
}

// Enters an autocast region: `device` autocasts to `dtype`, one nesting level deeper (the
// cast cache cleared when the enclosing region autocasts to another dtype).
int studioize_autocast_enter(int device, int dtype, char *err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(device);
    auto s = scalar_type(dtype);
    // The cast cache is keyed by the fp32 weight only: casts made for an enclosing region
    // of another dtype must not be served here.
    if (at::autocast::is_autocast_enabled(t) && at::autocast::get_autocast_dtype(t) != s) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(t, true);
    at::autocast::set_autocast_dtype(t, s);
    at::autocast::increment_nesting();
  });
}

// Leaves an autocast region: one nesting level up (the cast cache cleared when this was the
// outermost region, or when the enclosing one autocasts to another dtype), then the device's
// flag and dtype as they were before it.
int studioize_autocast_exit(int device, bool enabled, int dtype, char *err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(device);
    auto s = scalar_type(dtype);
    // Back in an enclosing region of another dtype: this region's casts must go too.
    bool other_dtype = enabled && at::autocast::get_autocast_dtype(t) != s;
    if (at::autocast::decrement_nesting() == 0 || other_dtype) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(t, enabled);
    at::autocast::set_autocast_dtype(t, s);
  });
}

}  // extern "C"
