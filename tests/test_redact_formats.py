"""Redaction of secret values by their format: signed URLs and vendor tokens.

Every vendor format is attacked alone, in prose, quoted, after an ordinary name and in
brackets; a signed URL loses its signing and credential parameters and keeps the rest.
Tokens are generated from seeded randomness, so no real-looking credential is written here.
"""

from __future__ import annotations

import string

import pytest

import helpers

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
chars = helpers.token_chars
redacted = helpers.redacted


SIGNED_URLS = {
    "s3 presigned": (
        "https://b.s3.amazonaws.com/k.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIA{chars(10, 16, string.ascii_uppercase)}%2F20240115%2Fus-east-1"
        f"&X-Amz-Date=20240115T000000Z&X-Amz-Expires=3600&X-Amz-Signature={chars(11, 64, HEX)}"
        f"&X-Amz-Security-Token={chars(12, 200, ALNUM + '%')}"
    ),
    "gcs signed": f"https://storage.googleapis.com/b/o?X-Goog-Signature={chars(13, 256, HEX)}",
    "azure sas": f"https://a.blob.core.windows.net/c/b?sv=2021&se=2024&sig={chars(14, 43)}%3D",
    "cloudfront": f"https://d1.cloudfront.net/v?Expires=1&Signature={chars(15, 40)}~&Key-Pair-Id=K",
    "token in a query": f"https://api.example.com/feed?token={chars(16, 32)}&page=2",
    "signature in a query": f"https://cdn.example.com/a.png?signature={chars(17, 40)}",
    "sig in a query": f"https://x.example.com/f?sig={chars(18, 40)}&exp=1",
    "azure functions code": f"https://f.azurewebsites.net/api/h?code={chars(19, 54)}==",
    "oauth callback": f"https://app.example.com/cb?code={chars(20, 40)}&state=abc",
    "akamai-style hmac": f"https://media.example.com/v.m3u8?exp=1&hmac={chars(21, 64, HEX)}",
}


@pytest.mark.parametrize("url", SIGNED_URLS.values(), ids=SIGNED_URLS.keys())
def test_signed_urls_lose_their_signatures_and_tokens(url: str) -> None:
    """The signing and credential parameters go; the rest of the URL stays readable."""
    out = redacted(url)
    for part in url.replace("&", "?").split("?")[1:]:
        name, _, value = part.partition("=")
        if name.lower() in {"x-amz-signature", "x-goog-signature", "sig", "signature",
                            "token", "code", "x-amz-security-token", "hmac"}:  # fmt: skip
            assert value[:-3] not in out, name
    assert out.startswith(url.split("?", maxsplit=1)[0])


def vendor_tokens() -> dict[str, str]:
    """One token of each format: prefix and body as the vendor issues them."""
    up, low, digits = string.ascii_uppercase, string.ascii_lowercase, string.digits
    return {
        "openai project": "sk-proj-" + chars(30, 48) + "T3BlbkFJ" + chars(31, 48),
        "anthropic": "sk-ant-api03-" + chars(32, 93, ALNUM + "-_") + "AA",
        "openrouter": "sk-or-v1-" + chars(33, 64, HEX),
        "groq": "gsk_" + chars(34, 52),
        "hugging face": "hf_" + chars(35, 34, up + low),
        "hugging face org": "api_org_" + chars(36, 34, up + low),
        "replicate": "r8_" + chars(37, 37),
        "perplexity": "pplx-" + chars(38, 48),
        "xai": "xai-" + chars(39, 80),
        "langsmith": "lsv2_pt_" + chars(40, 32, HEX) + "_" + chars(41, 10, HEX),
        "tavily": "tvly-" + chars(42, 32),
        "pinecone": "pcsk_" + chars(43, 5) + "_" + chars(44, 60),
        "voyage": "pa-" + chars(45, 43, ALNUM + "-_"),
        "elevenlabs": "sk_" + chars(46, 48, HEX),
        "nvidia": "nvapi-" + chars(123, 64, ALNUM + "-_"),
        "cerebras": "csk-" + chars(124, 48, string.ascii_lowercase + string.digits),
        "together": "tgp_v1_" + chars(125, 43, ALNUM + "-_"),
        "jina": "jina_" + chars(126, 60),
        "firecrawl": "fc-" + chars(127, 32, HEX),
        "turbopuffer": "tpuf_" + chars(128, 32),
        "phase service token": f"pss_service:v2:{chars(129, 64, HEX)}:{chars(130, 64, HEX)}",
        "meta access token": "EAAG" + chars(131, 180),
        "pkcs8 key, no armour": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + chars(132, 1200, B64),
        "pkcs1 key, no armour": "MIIEpAIBAAKCAQEA" + chars(133, 1200, B64),
        "slack bot": f"xoxb-{chars(47, 12, digits)}-{chars(48, 13, digits)}-{chars(49, 24)}",
        "slack app": f"xapp-1-A{chars(50, 10, up)}-{chars(51, 13, digits)}-{chars(52, 64, HEX)}",
        "telegram bot": chars(53, 10, digits) + ":AA" + chars(54, 33, ALNUM + "_-"),
        "discord bot": f"MT{chars(55, 24)}.{chars(56, 6)}.{chars(57, 38, ALNUM + '_-')}",
        "discord webhook": "https://discord.com/api/webhooks/"
        + f"1{chars(58, 17, digits)}/{chars(59, 68)}",
        "teams webhook": "https://a.webhook.office.com/webhookb2/"
        + f"{chars(60, 8)}@x/IncomingWebhook/{chars(61, 32)}",
        "slack webhook": f"https://hooks.slack.com/services/T{chars(62, 8, up)}/B1/{chars(64, 24)}",
        "doppler service (environment)": "dp.st.prd." + chars(65, 43),
        "doppler service (branch config)": "dp.st.dev_personal." + chars(66, 43),
        "doppler personal": "dp.pt." + chars(67, 43),
        "doppler service account": "dp.sa." + chars(68, 43),
        "vault": "hvs." + chars(69, 90, ALNUM + "_-"),
        "vault legacy": "s." + chars(70, 23) + "7",
        "infisical": f"st.{chars(71, 24, HEX)}.{chars(72, 32, HEX)}.{chars(73, 32, HEX)}",
        "1password service account": "ops_eyJ" + chars(74, 250, ALNUM + "+/"),
        "bitwarden": f"0.48b4774c-68ab-4af5-b3ab-b0920085e3e5.{chars(75, 30)}:{chars(76, 22)}",
        "stripe secret": "sk_live_" + chars(77, 99),
        "stripe restricted": "rk_live_" + chars(78, 99),
        "stripe webhook": "whsec_" + chars(79, 32),
        "github classic": "ghp_" + chars(80, 36),
        "github oauth": "gho_" + chars(81, 36),
        "github fine-grained": "github_pat_" + chars(82, 22) + "_" + chars(83, 59),
        "gitlab": "glpat-" + chars(84, 20, ALNUM + "-_"),
        "gitlab runner": "glrt-" + chars(85, 20),
        "npm": "npm_" + chars(86, 36),
        "pypi": "pypi-AgEIcHlwaS5vcmc" + chars(87, 70, ALNUM + "-_"),
        "docker hub": "dckr_pat_" + chars(88, 27, ALNUM + "-_"),
        "azure ad client secret": chars(89, 3) + "8Q~" + chars(90, 34, ALNUM + "_~.-"),
        "azure devops": chars(91, 76) + "AZDO" + chars(92, 4),
        "gcp api key": "AIza" + chars(93, 35, ALNUM + "-_"),
        "google refresh": "1//0" + chars(94, 60, ALNUM + "-_"),
        "aws access key id": "AKIA" + chars(95, 16, up + "234567"),
        "aws session token": "IQoJb3JpZ2luX2VjE" + chars(96, 300, ALNUM + "+/"),
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + chars(97, 43, ALNUM + "-_"),
        "sendgrid": "SG." + chars(98, 22, ALNUM + "-_") + "." + chars(99, 43, ALNUM + "-_"),
        "twilio": "SK" + chars(100, 32, HEX),
        "mailgun": "key-" + chars(101, 32, HEX),
        "mailchimp": chars(102, 32, HEX) + "-us21",
        "heroku": "HRKU-AA" + chars(103, 58, ALNUM + "_-"),
        "digitalocean": "dop_v1_" + chars(104, 64, HEX),
        "supabase": "sbp_" + chars(105, 40, HEX),
        "databricks": "dapi" + chars(106, 32, HEX),
        "sentry": "sntryu_" + chars(107, 64, HEX),
        "new relic": "NRAK-" + chars(108, 27, up + digits),
        "linear": "lin_api_" + chars(109, 40),
        "notion": "ntn_" + chars(110, 46),
        "atlassian": "ATATT3xFfGF0" + chars(111, 180, ALNUM + "-_="),
        "shopify": "shpat_" + chars(112, 32, HEX),
        "square": "EAAA" + chars(113, 60, ALNUM + "-_"),
        "terraform": chars(114, 14) + ".atlasv1." + chars(115, 67, ALNUM + "-_="),
        "age": "AGE-SECRET-KEY-1" + chars(116, 58, up + digits),
        "grafana": "glsa_" + chars(117, 32) + "_" + chars(118, 8, HEX),
        "airtable": "pat" + chars(119, 14) + "." + chars(120, 64, HEX),
        "braintree": f"access_token$production${chars(121, 16, low)}${chars(122, 32, HEX)}",
    }  # fmt: skip


@pytest.mark.parametrize(("name", "token"), vendor_tokens().items(), ids=vendor_tokens().keys())
def test_vendor_tokens_are_redacted_in_any_context(name: str, token: str) -> None:
    """Alone, in prose, quoted, after an ordinary name: no part of the secret stays."""
    core = token[-16:]
    for text in (token, f"using {token} now", f"'{token}'", f"value={token}", f"[{token}]"):
        assert core not in redacted(text), (name, text)
