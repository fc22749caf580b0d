package dev.kerascnn.core;

import dev.kerascnn.core.BundleMetadata.Activation;
import dev.kerascnn.core.BundleMetadata.TensorSpec;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * The model's output tensor -> ranked classes.
 *
 * <ul>
 *   <li>scores: the output, dequantized for integer files as {@code (q - zero_point) * scale} in
 *       float32 ({@code kerascnn.export.runtime.dequantize});</li>
 *   <li>ranking: by score, highest first; equal scores keep the lower class index first (int8
 *       outputs tie often);</li>
 *   <li>confidences: softmax of the scores when {@code output.activation} is "none" (logits),
 *       the scores themselves for "softmax" and "sigmoid". Softmax never reorders, so the ranking
 *       is the same either way; ranking the scores avoids ties that softmax rounding would add.</li>
 * </ul>
 */
public final class Postprocessor {

    /** One ranked class. */
    public static final class Recognition {
        public final int index;
        public final String label;
        /** What the app shows: a probability (see the class comment). */
        public final float confidence;
        /** The dequantized output value the ranking used. */
        public final float score;

        public Recognition(int index, String label, float confidence, float score) {
            this.index = index;
            this.label = label;
            this.confidence = confidence;
            this.score = score;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%s (%d): %.4f", label, index, confidence);
        }
    }

    private final TensorSpec output;
    private final Activation activation;
    private final List<String> labels;

    /** For the bundle's default TFLite file, with the class names from metadata.json. */
    public Postprocessor(BundleMetadata metadata) {
        this(metadata, metadata.defaultModelFile().output, metadata.classNames());
    }

    /** {@code labels}: one name per class, e.g. {@code metadata.parseLabels(labels.txt)}. */
    public Postprocessor(BundleMetadata metadata, TensorSpec output, List<String> labels) {
        if (labels.size() != metadata.classes) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%d labels for a model with %d classes", labels.size(), metadata.classes));
        }
        this.output = output;
        this.activation = metadata.activation;
        this.labels = Collections.unmodifiableList(new ArrayList<String>(labels));
    }

    public TensorSpec outputSpec() {
        return output;
    }

    /** A direct buffer in native byte order with room for one output tensor. */
    public ByteBuffer allocateOutput() {
        return ByteBuffer.allocateDirect(output.bytes()).order(ByteOrder.nativeOrder());
    }

    /** Scores from the interpreter's output buffer (read from position 0, in its byte order). */
    public float[] scores(ByteBuffer buffer) {
        int n = output.elements();
        float[] scores = new float[n];
        ByteBuffer view = buffer.duplicate().order(buffer.order());
        view.rewind();
        for (int i = 0; i < n; i++) {
            switch (output.dtype) {
                case FLOAT32:
                    scores[i] = view.getFloat();
                    break;
                case INT8:
                    scores[i] = dequantize(view.get());
                    break;
                default:
                    scores[i] = dequantize(view.get() & 0xFF);
                    break;
            }
        }
        return scores;
    }

    /** Scores from quantized values (int8 as -128..127, uint8 as 0..255). */
    public float[] scores(int[] quantized) {
        if (!output.dtype.isInteger()) {
            throw new IllegalStateException("The output is " + output.dtype + "; it is not quantized");
        }
        float[] scores = new float[quantized.length];
        for (int i = 0; i < quantized.length; i++) {
            scores[i] = dequantize(quantized[i]);
        }
        return scores;
    }

    private float dequantize(int q) {
        return (float) (q - output.zeroPoint) * (float) output.scale;
    }

    /** What the app shows for each class: softmax(scores) for logits, else the scores. */
    public float[] confidences(float[] scores) {
        return activation == Activation.NONE ? softmax(scores) : scores.clone();
    }

    /** The k best classes (fewer if the model has fewer), best first. */
    public List<Recognition> topK(float[] scores, int k) {
        if (scores.length != labels.size()) {
            throw new IllegalArgumentException(scores.length + " scores for " + labels.size() + " classes");
        }
        float[] confidences = confidences(scores);
        int[] order = rank(scores, k);
        List<Recognition> top = new ArrayList<Recognition>(order.length);
        for (int index : order) {
            top.add(new Recognition(index, labels.get(index), confidences[index], scores[index]));
        }
        return top;
    }

    /** Reads the output buffer and returns its k best classes. */
    public List<Recognition> topK(ByteBuffer buffer, int k) {
        return topK(scores(buffer), k);
    }

    /**
     * Indices of the k highest values, highest first; equal values keep the lower index first
     * (NumPy's {@code argsort(-x, kind="stable")}); NaN ranks last.
     */
    public static int[] rank(float[] values, int k) {
        int count = Math.max(0, Math.min(k, values.length));
        int[] order = new int[count];
        boolean[] taken = new boolean[values.length];
        for (int r = 0; r < count; r++) {
            int best = -1;
            for (int i = 0; i < values.length; i++) {
                if (taken[i]) {
                    continue;
                }
                if (best < 0 || values[i] > values[best] || (Float.isNaN(values[best]) && !Float.isNaN(values[i]))) {
                    best = i;
                }
            }
            taken[best] = true;
            order[r] = best;
        }
        return order;
    }

    /** Softmax in double precision (stable: the maximum is subtracted first). */
    public static float[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double[] e = new double[logits.length];
        double sum = 0.0;
        for (int i = 0; i < logits.length; i++) {
            e[i] = Math.exp(logits[i] - max);
            sum += e[i];
        }
        float[] p = new float[logits.length];
        for (int i = 0; i < logits.length; i++) {
            p[i] = (float) (e[i] / sum);
        }
        return p;
    }
}
