// Plain Java, no Android dependency: BundleMetadata, Preprocessor, Resize, Postprocessor.
// The main sources use only the Java 8 library (what Android API 24 has); the repository's CI
// compiles them with `javac --release 8` to keep it so (tests/test_android_core.py).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    implementation(libs.gson)
    testImplementation(libs.junit)
}
