// The 68-point predictor: dlib's shape_predictor (an ensemble of regression
// trees, Kazemi & Sullivan 2014) read from dlib's file format and run with a
// real-valued face box and real-valued output points.
//
// dlib::shape_predictor::operator() takes an integer dlib::rectangle and
// returns integer dlib::points, which would add up to half a pixel of
// rounding to every landmark and make the fit jump as the box moves by
// whole pixels. LmPredictor reads the same four members, in the same order
// as dlib::deserialize(shape_predictor&) in dlib 19.24 (each tree with
// dlib's own deserialize), and runs the same cascade -- the same trees, the
// same feature pixels, sampled the same way (nearest pixel, intensity =
// dlib::get_pixel_intensity of a bgr_pixel) -- with the box and the output
// kept in floating point. lm_ref_* run dlib's own class for the tests to
// compare.
//
// Memory layout: the model is 120,000 regression-tree leaves of 68 (x, y)
// offsets (65 MB), and a fit reads one leaf in each of its 7,500 trees: it
// is bound by memory latency. dlib keeps every tree's splits and every leaf
// in heap blocks of their own, reached through a chain of pointers
// (forest → tree → leaf vector → matrix data). Here the trees are packed as
// they are read, splits and leaves each contiguous, with a small table of
// offsets; the leaves' block is 2 MiB-aligned and offered to transparent
// huge pages (madvise; a hint). The arithmetic is dlib's, in the same
// order, so the results are the same; a fit takes about half the time of
// dlib's own class on the same face (BenchmarkFit against
// BenchmarkFitDlib), and the model takes 65 MB of memory instead of 72 MB
// (loading it, too: the trees are packed one by one as they are read).

#include "landmarks.h"

#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv.h>
#include <dlib/serialize.h>

#include <opencv2/core.hpp>

#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// A split node: go left when feat[idx1] − feat[idx2] > thresh.
struct LmSplit {
    uint32_t idx1, idx2;
    float thresh;
};

// A packed tree: its splits (a complete binary tree, breadth first) and its
// leaves (nsplits+1 of them, 136 floats each), as offsets.
struct LmTree {
    size_t splits;  // index of its first split in LmPredictor::splits
    size_t leaves;  // index of its first leaf value in LmPredictor::leaves
    uint32_t nsplits;
};

struct LmPredictor {
    dlib::matrix<float, 0, 1> initial_shape;  // unit-box coordinates, x0 y0 x1 y1 ...
    std::vector<std::vector<LmTree>> trees;   // per cascade
    std::vector<std::vector<unsigned long>> anchor_idx;
    std::vector<std::vector<dlib::vector<float, 2>>> deltas;

    std::vector<LmSplit> splits;
    float* leaves = nullptr;  // in map
    void* map = nullptr;      // anonymous mapping holding the leaves
    size_t map_len = 0;

    LmPredictor() = default;
    LmPredictor(const LmPredictor&) = delete;
    LmPredictor& operator=(const LmPredictor&) = delete;
    ~LmPredictor() {
        if (map != nullptr) munmap(map, map_len);
    }
};

namespace {

void set_err(char* err, int errlen, const std::string& msg) {
    if (err == nullptr || errlen <= 0) return;
    std::snprintf(err, static_cast<size_t>(errlen), "%s", msg.c_str());
}

struct bad_model : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr size_t kHuge = size_t(2) << 20;
constexpr long kShapeLen = 2 * LM_PARTS;

// read_forests reads dlib's std::vector<std::vector<impl::regression_tree>>
// tree by tree into p's packed layout. A serialised float takes at least
// two bytes (dlib writes a mantissa and an exponent, each with a length
// byte), so the leaves of a file of file_len bytes fit in 2·file_len bytes:
// that much address space is reserved, and only what is written is backed.
void read_forests(std::istream& in, size_t file_len, LmPredictor& p) {
    const size_t cap = 2 * file_len / sizeof(float);  // leaf values that can fit
    p.map_len = cap * sizeof(float) + kHuge;
    void* map = mmap(nullptr, p.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        p.map_len = 0;
        throw std::bad_alloc();
    }
    p.map = map;
    char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(map) + kHuge - 1) & ~(kHuge - 1));
#ifdef MADV_HUGEPAGE
    madvise(base, cap * sizeof(float), MADV_HUGEPAGE);  // a hint: may fail
#endif
    p.leaves = reinterpret_cast<float*>(base);

    unsigned long ncascades = 0;
    dlib::deserialize(ncascades, in);
    if (ncascades == 0 || ncascades > 1000) throw bad_model("implausible cascade count");
    p.trees.resize(ncascades);
    size_t nleaf = 0;
    dlib::impl::regression_tree tree;
    for (auto& cascade : p.trees) {
        unsigned long ntrees = 0;
        dlib::deserialize(ntrees, in);
        if (ntrees > file_len) throw bad_model("implausible tree count");
        cascade.reserve(ntrees);
        for (unsigned long t = 0; t < ntrees; ++t) {
            deserialize(tree, in);  // dlib's, found by ADL
            const size_t ns = tree.splits.size();
            if (tree.leaf_values.size() != ns + 1) throw bad_model("malformed regression tree");
            if (nleaf + (ns + 1) * kShapeLen > cap) throw bad_model("more leaves than the file can hold");
            cascade.push_back(LmTree{p.splits.size(), nleaf, static_cast<uint32_t>(ns)});
            for (const auto& sp : tree.splits) {
                if (sp.idx1 > UINT32_MAX || sp.idx2 > UINT32_MAX) throw bad_model("split feature out of range");
                p.splits.push_back(LmSplit{static_cast<uint32_t>(sp.idx1), static_cast<uint32_t>(sp.idx2), sp.thresh});
            }
            for (const auto& leaf : tree.leaf_values) {
                if (leaf.size() != kShapeLen) throw bad_model("leaf of the wrong size");
                std::memcpy(p.leaves + nleaf, &leaf(0), kShapeLen * sizeof(float));
                nleaf += kShapeLen;
            }
        }
    }
    p.splits.shrink_to_fit();
    // Give back the address space past the leaves (whole pages only).
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p.leaves + nleaf) + 4095) & ~uintptr_t(4095);
    const uintptr_t map_end = reinterpret_cast<uintptr_t>(map) + p.map_len;
    if (end < map_end && munmap(reinterpret_cast<void*>(end), map_end - end) == 0)
        p.map_len = end - reinterpret_cast<uintptr_t>(map);
}

// check rejects a file that parsed but whose indices would read out of
// bounds in the cascade.
std::string check(const LmPredictor& p) {
    if (p.initial_shape.size() != kShapeLen)
        return "model has " + std::to_string(p.initial_shape.size() / 2) + " parts, want 68";
    if (p.trees.size() != p.anchor_idx.size() || p.trees.size() != p.deltas.size())
        return "inconsistent cascade sizes";
    for (size_t c = 0; c < p.trees.size(); ++c) {
        const size_t nfeat = p.deltas[c].size();
        if (p.anchor_idx[c].size() != nfeat) return "inconsistent feature tables";
        for (unsigned long a : p.anchor_idx[c])
            if (a >= LM_PARTS) return "feature anchor out of range";
        for (const LmTree& t : p.trees[c])
            for (size_t i = 0; i < t.nsplits; ++i) {
                const LmSplit& s = p.splits[t.splits + i];
                if (s.idx1 >= nfeat || s.idx2 >= nfeat) return "split feature out of range";
            }
    }
    return "";
}

std::string first_line(std::string m) {
    while (!m.empty() && (m[0] == '\n' || m[0] == ' ')) m.erase(0, 1);
    return m.substr(0, m.find('\n'));
}

}  // namespace

extern "C" LmPredictor* lm_load(const char* path, char* err, int errlen) {
    try {
        std::ifstream in(path, std::ios::binary | std::ios::ate);
        if (!in) {
            set_err(err, errlen, "cannot open");
            return nullptr;
        }
        const std::streamoff len = in.tellg();
        in.seekg(0);
        if (len <= 0 || !in) {
            set_err(err, errlen, "not a dlib shape_predictor (empty or unreadable)");
            return nullptr;
        }
        auto p = std::make_unique<LmPredictor>();
        int version = 0;
        dlib::deserialize(version, in);
        if (version != 1) {
            set_err(err, errlen, "not a dlib shape_predictor (version " + std::to_string(version) + ")");
            return nullptr;
        }
        dlib::deserialize(p->initial_shape, in);
        if (p->initial_shape.size() != kShapeLen) {
            set_err(err, errlen, "model has " + std::to_string(p->initial_shape.size() / 2) + " parts, want 68");
            return nullptr;
        }
        read_forests(in, static_cast<size_t>(len), *p);
        dlib::deserialize(p->anchor_idx, in);
        dlib::deserialize(p->deltas, in);
        std::string bad = check(*p);
        if (!bad.empty()) {
            set_err(err, errlen, "not a usable shape_predictor: " + bad);
            return nullptr;
        }
        return p.release();
    } catch (const bad_model& e) {
        set_err(err, errlen, std::string("not a usable shape_predictor: ") + e.what());
    } catch (const std::bad_alloc&) {
        set_err(err, errlen, "not a dlib shape_predictor (implausible sizes), or out of memory");
    } catch (const std::exception& e) {
        // dlib::serialization_error's message spans lines; keep the first.
        set_err(err, errlen, "not a dlib shape_predictor: " + first_line(e.what()));
    } catch (...) {
        set_err(err, errlen, "not a dlib shape_predictor");
    }
    return nullptr;
}

extern "C" void lm_free(LmPredictor* p) { delete p; }

extern "C" void lm_mean_shape(const LmPredictor* p, float* out) {
    for (long i = 0; i < 2 * LM_PARTS; ++i) out[i] = p->initial_shape(i);
}

extern "C" int lm_fit(const LmPredictor* p, void* mat, float x0, float y0, float x1, float y1,
                      float* out, char* err, int errlen) {
    try {
        const cv::Mat& m = *static_cast<const cv::Mat*>(mat);
        if (m.empty() || m.type() != CV_8UC3 || m.dims != 2) {
            set_err(err, errlen, "want a non-empty 8-bit BGR image");
            return -1;
        }
        // A view of the Mat's pixels: no copy.
        const dlib::cv_image<dlib::bgr_pixel> view(m);
        const dlib::const_image_view<dlib::cv_image<dlib::bgr_pixel>> img(view);
        const long nc = m.cols, nr = m.rows;
        // The box's unit square → image, as dlib's unnormalizing_tform(rect)
        // does for (left, top)-(right, bottom).
        const float sx = x1 - x0, sy = y1 - y0;

        dlib::matrix<float, 0, 1> shape = p->initial_shape;
        std::vector<float> feat;
        for (size_t c = 0; c < p->trees.size(); ++c) {
            // Feature pixels: each is anchored to a landmark of the current
            // shape and offset by a delta rotated and scaled with the shape
            // (impl::extract_feature_pixel_values).
            const dlib::matrix<float, 2, 2> tform = dlib::matrix_cast<float>(
                dlib::impl::find_tform_between_shapes(p->initial_shape, shape).get_m());
            const auto& anchors = p->anchor_idx[c];
            const auto& deltas = p->deltas[c];
            feat.resize(deltas.size());
            for (size_t i = 0; i < deltas.size(); ++i) {
                const dlib::vector<float, 2> q = tform * deltas[i] + dlib::impl::location(shape, anchors[i]);
                // Nearest pixel, rounded as dlib rounds a vector<double> to a point.
                const long px = static_cast<long>(std::floor(double(x0) + double(q.x()) * sx + 0.5));
                const long py = static_cast<long>(std::floor(double(y0) + double(q.y()) * sy + 0.5));
                if (px >= 0 && py >= 0 && px < nc && py < nr)
                    feat[i] = dlib::get_pixel_intensity(img[py][px]);
                else
                    feat[i] = 0;
            }
            // impl::regression_tree::operator(), then shape += leaf.
            float* sh = &shape(0);
            for (const LmTree& tree : p->trees[c]) {
                const LmSplit* sp = p->splits.data() + tree.splits;
                uint32_t i = 0;
                while (i < tree.nsplits)
                    i = (feat[sp[i].idx1] - feat[sp[i].idx2] > sp[i].thresh) ? 2 * i + 1 : 2 * i + 2;
                const float* leaf = p->leaves + tree.leaves + size_t(i - tree.nsplits) * (2 * LM_PARTS);
                for (int k = 0; k < 2 * LM_PARTS; ++k) sh[k] += leaf[k];
            }
        }
        for (long i = 0; i < LM_PARTS; ++i) {
            out[2 * i] = x0 + shape(2 * i) * sx;
            out[2 * i + 1] = y0 + shape(2 * i + 1) * sy;
        }
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

extern "C" void* lm_ref_load(const char* path, char* err, int errlen) {
    try {
        auto sp = std::make_unique<dlib::shape_predictor>();
        dlib::deserialize(path) >> *sp;
        return sp.release();
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return nullptr;
}

extern "C" void lm_ref_free(void* r) { delete static_cast<dlib::shape_predictor*>(r); }

extern "C" int lm_ref_fit(void* r, void* mat, long left, long top, long right, long bottom,
                          float* out, char* err, int errlen) {
    try {
        const cv::Mat& m = *static_cast<const cv::Mat*>(mat);
        const dlib::cv_image<dlib::bgr_pixel> img(m);
        const auto det = (*static_cast<dlib::shape_predictor*>(r))(img, dlib::rectangle(left, top, right, bottom));
        if (det.num_parts() != LM_PARTS) {
            set_err(err, errlen, "wrong number of parts");
            return -1;
        }
        for (unsigned long i = 0; i < LM_PARTS; ++i) {
            out[2 * i] = det.part(i).x();
            out[2 * i + 1] = det.part(i).y();
        }
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}
