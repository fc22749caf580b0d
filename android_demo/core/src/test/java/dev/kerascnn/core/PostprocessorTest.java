package dev.kerascnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import dev.kerascnn.core.BundleMetadata.DType;
import dev.kerascnn.core.BundleMetadata.TensorSpec;
import dev.kerascnn.core.Postprocessor.Recognition;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;

import org.junit.Test;

public class PostprocessorTest {

    private static final List<String> LABELS = Arrays.asList("a", "b", "c", "d");

    private static Postprocessor post(String activation, TensorSpec output) {
        return new Postprocessor(MetadataFixtures.metadata(4, activation), output, LABELS);
    }

    @Test
    public void tiesKeepTheLowerIndexFirst() {
        assertArrayEquals(new int[] {1, 3, 0}, Postprocessor.rank(new float[] {0.1f, 0.4f, 0.1f, 0.4f}, 3));
        assertArrayEquals(new int[] {0, 1, 2, 3}, Postprocessor.rank(new float[] {0f, 0f, 0f, 0f}, 10));
        assertArrayEquals(new int[] {}, Postprocessor.rank(new float[] {1f}, 0));
        assertArrayEquals(new int[] {2, 0, 1}, Postprocessor.rank(new float[] {-1f, Float.NaN, 5f}, 3));
    }

    @Test
    public void logitsGetSoftmaxConfidencesAndKeepTheirOrder() {
        Postprocessor p = post("none", new TensorSpec(DType.FLOAT32, new int[] {1, 4}, 0, 0));
        List<Recognition> top = p.topK(new float[] {1f, 3f, 2f, 3f}, 2);
        assertEquals(1, top.get(0).index);
        assertEquals("b", top.get(0).label);
        assertEquals(3, top.get(1).index);
        double sum = Math.exp(1) + 2 * Math.exp(3) + Math.exp(2);
        assertEquals(Math.exp(3) / sum, top.get(0).confidence, 1e-6);
        assertEquals(3f, top.get(0).score, 0f);
        float total = 0f;
        for (float c : p.confidences(new float[] {1f, 3f, 2f, 3f})) {
            total += c;
        }
        assertEquals(1f, total, 1e-6f);
        float[] big = Postprocessor.softmax(new float[] {1000f, 0f});
        assertEquals(1f, big[0], 0f);
    }

    @Test
    public void softmaxAndSigmoidOutputsAreShownAsTheyAre() {
        for (String activation : new String[] {"softmax", "sigmoid"}) {
            Postprocessor p = post(activation, new TensorSpec(DType.FLOAT32, new int[] {1, 4}, 0, 0));
            assertArrayEquals(new float[] {0.9f, 0.8f}, new float[] {
                    p.topK(new float[] {0.8f, 0.9f, 0.1f, 0.7f}, 2).get(0).confidence,
                    p.topK(new float[] {0.8f, 0.9f, 0.1f, 0.7f}, 2).get(1).confidence}, 0f);
        }
    }

    @Test
    public void dequantizesInt8AndUint8Buffers() {
        Postprocessor int8 = post("softmax", new TensorSpec(DType.INT8, new int[] {1, 4}, 1.0 / 256, -128));
        ByteBuffer buffer = int8.allocateOutput();
        buffer.put(new byte[] {-128, 127, 0, -1});
        assertArrayEquals(new float[] {0f, 255f / 256, 128f / 256, 127f / 256}, int8.scores(buffer), 0f);

        Postprocessor uint8 = post("softmax", new TensorSpec(DType.UINT8, new int[] {1, 4}, 0.5, 10));
        buffer = uint8.allocateOutput();
        buffer.put(new byte[] {(byte) 255, 10, 0, 11});
        assertArrayEquals(new float[] {122.5f, 0f, -5f, 0.5f}, uint8.scores(buffer), 0f);
        assertEquals(0, uint8.topK(buffer, 1).get(0).index);
    }

    @Test
    public void readsFloatBuffersInTheirByteOrder() {
        Postprocessor p = post("softmax", new TensorSpec(DType.FLOAT32, new int[] {1, 4}, 0, 0));
        for (ByteOrder order : new ByteOrder[] {ByteOrder.LITTLE_ENDIAN, ByteOrder.BIG_ENDIAN}) {
            ByteBuffer buffer = ByteBuffer.allocate(16).order(order);
            buffer.putFloat(0.1f).putFloat(0.2f).putFloat(0.3f).putFloat(0.4f);
            buffer.position(8); // the core reads from 0 whatever the position
            assertArrayEquals(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, p.scores(buffer), 0f);
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void labelCountMustMatchTheClasses() {
        new Postprocessor(MetadataFixtures.metadata(4, "softmax"),
                new TensorSpec(DType.FLOAT32, new int[] {1, 4}, 0, 0), Arrays.asList("a", "b"));
    }

    @Test
    public void topKIsCappedByTheClassCount() {
        Postprocessor p = post("softmax", new TensorSpec(DType.FLOAT32, new int[] {1, 4}, 0, 0));
        assertEquals(4, p.topK(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, 5).size());
        assertTrue(p.topK(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, 5).get(3).toString().startsWith("a (0)"));
    }
}
