package dockerstore

import (
	"encoding/json"
	"strings"
)

// OCI image layout media types and annotations (image-spec v1.0; the
// image name as containerd's export and Docker 25's save write it).
const (
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer    = "application/vnd.oci.image.layer.v1.tar"
	annotationRefName    = "org.opencontainers.image.ref.name"
	annotationImageName  = "io.containerd.image.name"
)

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      Digest            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *ociPlatform      `json:"platform,omitempty"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

func blobName(d Digest) string { return "blobs/sha256/" + d.Hex() }

// ociManifest writes the image's manifest blob (its config and layers
// uncompressed, as saved) and lists it in the index once per tag, once
// unnamed when it has none.
func (sv *saver) ociManifest(img SavedImage, config []byte) error {
	m := ociManifest{SchemaVersion: 2, MediaType: MediaTypeOCIManifest,
		Config: ociDescriptor{MediaType: MediaTypeOCIConfig, Digest: img.ID, Size: int64(len(config))}}
	for _, d := range img.DiffIDs {
		m.Layers = append(m.Layers, ociDescriptor{MediaType: MediaTypeOCILayer, Digest: d, Size: sv.sizes[d]})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	desc := ociDescriptor{MediaType: MediaTypeOCIManifest, Digest: DigestOf(raw), Size: int64(len(raw)), Platform: configPlatform(config)}
	if err := sv.writeFile(blobName(desc.Digest), raw); err != nil {
		return err
	}
	if len(img.Tags) == 0 {
		sv.index = append(sv.index, desc)
	}
	for _, t := range img.Tags {
		d := desc
		_, tag := splitTag(t)
		d.Annotations = map[string]string{annotationImageName: FullName(t), annotationRefName: tag}
		sv.index = append(sv.index, d)
	}
	return nil
}

// configPlatform is the platform an image config names, nil when it names
// none.
func configPlatform(config []byte) *ociPlatform {
	var p ociPlatform
	if json.Unmarshal(config, &p) != nil || p.OS == "" || p.Architecture == "" {
		return nil
	}
	return &p
}

// finishOCI writes manifest.json (Docker ≤ 24 loads the layout by it),
// index.json and oci-layout, and ends the archive.
func (sv *saver) finishOCI(manifest []manifestEntry) error {
	if err := sv.writeJSON("manifest.json", manifest); err != nil {
		return err
	}
	index := ociIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex, Manifests: sv.index}
	if index.Manifests == nil {
		index.Manifests = []ociDescriptor{}
	}
	if err := sv.writeJSON("index.json", index); err != nil {
		return err
	}
	if err := sv.writeJSON("oci-layout", map[string]string{"imageLayoutVersion": "1.0.0"}); err != nil {
		return err
	}
	return sv.tw.Close()
}

// FullName is a tag as Docker's reference package normalizes it:
// "busybox:1" is "docker.io/library/busybox:1", "me/x:1"
// "docker.io/me/x:1"; a name whose first part is a host (a dot, a port,
// localhost) stays.
func FullName(tag string) string {
	first, rest, ok := strings.Cut(tag, "/")
	switch {
	case !ok:
		return "docker.io/library/" + tag
	case first == "docker.io" || first == "index.docker.io":
		if !strings.Contains(rest, "/") {
			return "docker.io/library/" + rest
		}
		return "docker.io/" + rest
	case first == "localhost" || strings.ContainsAny(first, ".:"):
		return tag
	default:
		return "docker.io/" + tag
	}
}
