// Duet's one piece of C++: OpenVINO's SDPAToPagedAttention pass, which the C API does not offer.
//
// The pass swaps each layer's ScaledDotProductAttention and its ReadValue/Assign state for
// PagedAttentionExtension, whose KV cache lives in block tensors we own (see llm/paged/). The IR
// reader cannot create that op, so the graph cannot be rewritten on disk; it has to be changed in
// memory, on the model the C API has read. Built by server/build.rs against the headers of the
// same OpenVINO the server loads; loaded at run time only when paged attention is asked for.

#include <openvino/core/model.hpp>
#include <openvino/core/version.hpp>
#include <openvino/op/constant.hpp>
#include <openvino/op/gather.hpp>
#include <openvino/op/matmul.hpp>
#include <openvino/op/parameter.hpp>
#include <openvino/op/squeeze.hpp>
#include <openvino/pass/manager.hpp>
#include <openvino/pass/sdpa_to_paged_attention.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

// The C API's model handle (openvino/src/bindings/c/src/common.h): one shared_ptr to the C++
// model. Its layout has not changed since the C API 2.0 appeared; the caller checks the result
// against the C API's own view of the model (inputs before, inputs after).
struct ov_model {
    std::shared_ptr<ov::Model> object;
};

namespace {

void fail(char* error, size_t error_len, const std::string& message) {
    if (error && error_len) {
        std::snprintf(error, error_len, "%s", message.c_str());
    }
}

// Gather the hidden states of the rows in `logits_indices` before the vocabulary projection, so a
// step computes logits for the last token of each sequence only, not for every prompt token.
void gather_before_lm_head(const std::shared_ptr<ov::Model>& model) {
    auto logits = model->output("logits");
    std::shared_ptr<ov::Node> node = logits.get_node_shared_ptr();
    while (node && !ov::is_type<ov::op::v0::MatMul>(node)) {
        if (node->get_input_size() == 0) {
            throw std::runtime_error("no MatMul feeds the logits output");
        }
        node = node->input_value(0).get_node_shared_ptr();
    }
    auto hidden = node->input_value(0);
    auto indices = std::make_shared<ov::op::v0::Parameter>(ov::element::i64, ov::PartialShape{-1});
    indices->set_friendly_name("logits_indices");
    indices->get_output_tensor(0).set_names({"logits_indices"});
    auto axis = ov::op::v0::Constant::create(ov::element::i64, ov::Shape{}, {0});
    auto gathered = std::make_shared<ov::op::v8::Gather>(hidden, indices, axis);
    node->input(0).replace_source_output(gathered);
    model->add_parameters({indices});
}

// The C API cannot make a rank-0 tensor, so the scalar `max_context_len` becomes a [1] input,
// squeezed back to a scalar for the nodes that read it.
void max_context_len_as_vector(const std::shared_ptr<ov::Model>& model) {
    for (const auto& parameter : model->get_parameters()) {
        if (parameter->get_friendly_name() != "max_context_len" || parameter->get_partial_shape().rank() != 0) {
            continue;
        }
        auto readers = parameter->output(0).get_target_inputs();
        parameter->set_partial_shape(ov::PartialShape{1});
        auto scalar = std::make_shared<ov::op::v0::Squeeze>(parameter);
        for (auto reader : readers) {
            reader.replace_source_output(scalar);
        }
    }
}

}  // namespace

extern "C" {

// The OpenVINO version these headers belong to, e.g. "2026.4.1", so the caller can refuse a
// runtime of another version.
#define DUET_STR2(x) #x
#define DUET_STR(x) DUET_STR2(x)
__attribute__((visibility("default"))) const char* duet_paged_openvino_version() {
    return DUET_STR(OPENVINO_VERSION_MAJOR) "." DUET_STR(OPENVINO_VERSION_MINOR) "." DUET_STR(OPENVINO_VERSION_PATCH);
}

// Rewrite `model` (an ov_model_t* from ov_core_read_model) in place. Returns 0, or 1 with a
// message in `error`.
__attribute__((visibility("default"))) int duet_paged_transform(ov_model* model, char* error, size_t error_len) {
    try {
        if (!model || !model->object) {
            fail(error, error_len, "no model");
            return 1;
        }
        ov::pass::Manager manager;
        manager.register_pass<ov::pass::SDPAToPagedAttention>();
        manager.run_passes(model->object);
        gather_before_lm_head(model->object);
        max_context_len_as_vector(model->object);
        model->object->validate_nodes_and_infer_types();
        return 0;
    } catch (const std::exception& e) {
        fail(error, error_len, e.what());
        return 1;
    } catch (...) {
        fail(error, error_len, "unknown C++ exception");
        return 1;
    }
}

}  // extern "C"
