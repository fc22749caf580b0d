package dev.kerascnn.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;

/**
 * Reads an exported bundle directory as the app does (metadata.json, the labels file, every TFLite
 * file it names) and prints one line per file; exits 1 with the reason if the app would refuse it.
 * tests/test_android_core.py runs it on fresh exports.
 *
 * <p>Usage: {@code java -cp ... dev.kerascnn.core.BundleCheck BUNDLE_DIR...}
 */
public final class BundleCheck {

    private BundleCheck() {
    }

    public static void main(String[] args) throws IOException {
        int status = 0;
        for (String arg : args) {
            Path dir = Paths.get(arg);
            try {
                BundleMetadata m = BundleMetadata.parse(
                        new String(Files.readAllBytes(dir.resolve("metadata.json")), StandardCharsets.UTF_8));
                List<String> labels = m.parseLabels(
                        new String(Files.readAllBytes(dir.resolve(m.labelsFile)), StandardCharsets.UTF_8));
                if (!labels.equals(m.classNames())) {
                    throw new IllegalArgumentException(m.labelsFile + " differs from class_names");
                }
                for (BundleMetadata.ModelFile file : m.models().values()) {
                    Path path = dir.resolve(file.file);
                    if (!Files.isRegularFile(path) || Files.size(path) != file.sizeBytes) {
                        throw new IllegalArgumentException(file.file + " is missing or not " + file.sizeBytes + " bytes");
                    }
                    Preprocessor pre = new Preprocessor(m, file.input);
                    Postprocessor post = new Postprocessor(m, file.output, labels);
                    System.out.println("OK " + dir.getFileName() + " " + file.format + " in " + file.input.dtype
                            + " " + pre.height() + "x" + pre.width() + "x" + pre.channels() + " ("
                            + pre.allocateInput().capacity() + " bytes), out " + file.output.dtype + " "
                            + post.allocateOutput().capacity() + " bytes, " + m.resizeMethod + ", "
                            + m.channelOrder + ", " + m.activation);
                }
            } catch (IllegalArgumentException e) {
                System.out.println("REFUSED " + dir + ": " + e.getMessage());
                status = 1;
            }
        }
        System.exit(status);
    }
}
