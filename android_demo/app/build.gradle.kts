import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.kerascnn.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.kerascnn.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        // The interpreter memory-maps the model from the APK: it must be stored uncompressed.
        noCompress.add("tflite")
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.androidx.camera.core)
    implementation(libs.androidx.camera.camera2)
    implementation(libs.androidx.camera.lifecycle)
    implementation(libs.androidx.camera.view)
    implementation(libs.litert)
    implementation(libs.litert.gpu)
    implementation(libs.litert.gpu.api)
}

// ---- The kerascnn export bundle ------------------------------------------------------------------
// -Pbundle=PATH picks the bundle directory (what `python -m kerascnn export ... --out PATH` wrote);
// a relative PATH is resolved against android_demo/ (where gradlew runs), so the default is the
// repository's export/bundles/mobilenet_v2 (../../export/bundles/mobilenet_v2 seen from app/).
// Only what the phone reads is copied: metadata.json, labels.txt and the .tflite files.
val bundleDir: File = rootProject.file(providers.gradleProperty("bundle").getOrElse("../export/bundles/mobilenet_v2"))

val checkBundle = tasks.register("checkBundle") {
    group = "kerascnn"
    description = "Fails with instructions when the bundle directory has no metadata.json."
    val dir = bundleDir
    doLast {
        if (!dir.resolve("metadata.json").isFile) {
            throw GradleException(
                "No kerascnn export bundle at $dir (no metadata.json). Export one from the repository root, e.g.\n" +
                    "  python -m kerascnn export mobilenet_v2 --alpha 0.35 --input-size 96 --classes 10 " +
                    "--quantize int8 --calibration fashion_mnist --labels fashion_mnist\n" +
                    "or pass -Pbundle=PATH (relative to android_demo/, or absolute)."
            )
        }
    }
}

val copyBundle = tasks.register<Sync>("copyBundle") {
    group = "kerascnn"
    description = "Copies a kerascnn export bundle (-Pbundle=PATH) into src/main/assets/bundle/."
    dependsOn(checkBundle)
    from(bundleDir) {
        include("metadata.json", "labels.txt", "*.tflite")
    }
    into(layout.projectDirectory.dir("src/main/assets/bundle"))
}

tasks.named("preBuild") {
    dependsOn(copyBundle)
}
