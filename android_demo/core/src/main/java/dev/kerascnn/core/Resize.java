package dev.kerascnn.core;

/**
 * Image resizing that reproduces {@code keras.ops.image.resize} on the TensorFlow backend, which
 * is {@code tf.image.resize} (half-pixel centers, no antialiasing), value for value: the same float32
 * operations in the same order as TensorFlow's CPU kernels.
 *
 * <ul>
 *   <li>bilinear: source coordinate {@code (i + 0.5) * in/out - 0.5}; the two neighbours are
 *       {@code max(floor, 0)} and {@code min(ceil, in - 1)}; {@code top = tl + (tr - tl) * dx},
 *       {@code bottom = bl + (br - bl) * dx}, {@code top + (bottom - top) * dy}.</li>
 *   <li>nearest: source index {@code min(floor((i + 0.5) * in/out), in - 1)}.</li>
 *   <li>center crop: {@code keras.ops.image.resize(..., crop_to_aspect_ratio=True)}.</li>
 * </ul>
 */
public final class Resize {

    private Resize() {
    }

    /** Read access to an image: channel {@code c} of the pixel at row {@code y}, column {@code x}. */
    public interface Source {
        int height();

        int width();

        int channels();

        float get(int y, int x, int c);
    }

    /** Channel {@code c} of the pixel at row {@code y}, column {@code x}: a Source without its size. */
    public interface Pixels {
        float get(int y, int x, int c);
    }

    /** A Source of a fixed size; subclasses give the values. */
    public abstract static class SizedSource implements Source {
        protected final int height;
        protected final int width;
        protected final int channels;

        protected SizedSource(int height, int width, int channels) {
            this.height = height;
            this.width = width;
            this.channels = channels;
        }

        @Override
        public final int height() {
            return height;
        }

        @Override
        public final int width() {
            return width;
        }

        @Override
        public final int channels() {
            return channels;
        }
    }

    /** A {@code height x width x channels} Source whose values {@code pixels} gives. */
    public static Source source(int height, int width, int channels, final Pixels pixels) {
        return new SizedSource(height, width, channels) {
            @Override
            public float get(int y, int x, int c) {
                return pixels.get(y, x, c);
            }
        };
    }

    /** An HWC float image. */
    public static final class FloatImage extends SizedSource {
        private final float[] data;

        public FloatImage(float[] data, int height, int width, int channels) {
            super(height, width, channels);
            if (data.length != height * width * channels) {
                throw new IllegalArgumentException("FloatImage: " + data.length + " values for " + height
                        + "x" + width + "x" + channels);
            }
            this.data = data;
        }

        @Override
        public float get(int y, int x, int c) {
            return data[(y * width + x) * channels + c];
        }
    }

    /** A rectangle of a source image. */
    public static final class Region {
        public final int top;
        public final int left;
        public final int height;
        public final int width;

        public Region(int top, int left, int height, int width) {
            if (top < 0 || left < 0 || height < 1 || width < 1) {
                throw new IllegalArgumentException("Region: bad rectangle " + top + "," + left + " "
                        + height + "x" + width);
            }
            this.top = top;
            this.left = left;
            this.height = height;
            this.width = width;
        }

        @Override
        public String toString() {
            return "Region(top=" + top + ", left=" + left + ", height=" + height + ", width=" + width + ")";
        }
    }

    /** The whole image. */
    public static Region full(int height, int width) {
        return new Region(0, 0, height, width);
    }

    /**
     * The largest centered rectangle with the target's aspect ratio, computed as Keras's
     * {@code crop_to_aspect_ratio=True} does (float32 quotients truncated to int).
     */
    public static Region centerCrop(int height, int width, int targetHeight, int targetWidth) {
        int cropHeight = (int) ((float) (width * targetHeight) / (float) targetWidth);
        cropHeight = Math.max(Math.min(height, cropHeight), 1);
        int cropWidth = (int) ((float) (height * targetWidth) / (float) targetHeight);
        cropWidth = Math.max(Math.min(width, cropWidth), 1);
        int top = (int) ((float) (height - cropHeight) / 2f);
        int left = (int) ((float) (width - cropWidth) / 2f);
        return new Region(top, left, cropHeight, cropWidth);
    }

    /**
     * Resizes {@code region} of {@code source} to {@code outHeight x outWidth} into {@code dst}
     * (HWC, {@code source.channels()} channels).
     */
    public static void resize(Source source, Region region, BundleMetadata.ResizeMethod method,
                              int outHeight, int outWidth, float[] dst) {
        int channels = source.channels();
        if (region.top + region.height > source.height() || region.left + region.width > source.width()) {
            throw new IllegalArgumentException(region + " is outside the " + source.height() + "x"
                    + source.width() + " image");
        }
        if (dst.length != outHeight * outWidth * channels) {
            throw new IllegalArgumentException("resize: dst has " + dst.length + " values, expected "
                    + outHeight * outWidth * channels);
        }
        if (method == BundleMetadata.ResizeMethod.NEAREST) {
            int[] ys = nearestIndices(region.height, outHeight);
            int[] xs = nearestIndices(region.width, outWidth);
            int i = 0;
            for (int y = 0; y < outHeight; y++) {
                int sy = region.top + ys[y];
                for (int x = 0; x < outWidth; x++) {
                    int sx = region.left + xs[x];
                    for (int c = 0; c < channels; c++) {
                        dst[i++] = source.get(sy, sx, c);
                    }
                }
            }
            return;
        }
        Axis ya = new Axis(region.height, outHeight);
        Axis xa = new Axis(region.width, outWidth);
        int i = 0;
        for (int y = 0; y < outHeight; y++) {
            int y0 = region.top + ya.lower[y];
            int y1 = region.top + ya.upper[y];
            float dy = ya.lerp[y];
            for (int x = 0; x < outWidth; x++) {
                int x0 = region.left + xa.lower[x];
                int x1 = region.left + xa.upper[x];
                float dx = xa.lerp[x];
                for (int c = 0; c < channels; c++) {
                    float topLeft = source.get(y0, x0, c);
                    float topRight = source.get(y0, x1, c);
                    float bottomLeft = source.get(y1, x0, c);
                    float bottomRight = source.get(y1, x1, c);
                    float top = topLeft + (topRight - topLeft) * dx;
                    float bottom = bottomLeft + (bottomRight - bottomLeft) * dx;
                    dst[i++] = top + (bottom - top) * dy;
                }
            }
        }
    }

    /** Convenience: the whole image, into a new array. */
    public static float[] resize(Source source, BundleMetadata.ResizeMethod method, int outHeight, int outWidth) {
        float[] dst = new float[outHeight * outWidth * source.channels()];
        resize(source, full(source.height(), source.width()), method, outHeight, outWidth, dst);
        return dst;
    }

    static int[] nearestIndices(int in, int out) {
        float scale = (float) in / (float) out;
        int[] index = new int[out];
        for (int i = 0; i < out; i++) {
            float position = ((float) i + 0.5f) * scale;
            index[i] = Math.max(0, Math.min((int) Math.floor(position), in - 1));
        }
        return index;
    }

    /** Bilinear neighbours and weights along one axis (TensorFlow's compute_interpolation_weights). */
    static final class Axis {
        final int[] lower;
        final int[] upper;
        final float[] lerp;

        Axis(int in, int out) {
            float scale = (float) in / (float) out;
            lower = new int[out];
            upper = new int[out];
            lerp = new float[out];
            for (int i = 0; i < out; i++) {
                float position = ((float) i + 0.5f) * scale - 0.5f;
                float floor = (float) Math.floor(position);
                lower[i] = Math.max((int) floor, 0);
                upper[i] = Math.min((int) Math.ceil(position), in - 1);
                lerp[i] = position - floor;
            }
        }
    }
}
