#!/usr/bin/env python3
"""The insight page in a real browser (headless Chromium through Selenium), checked against
the topics read independently (confluent-kafka and fastavro, given only schemas/).

    python insight_browser.py URL BOOTSTRAP PROFILES_TOPIC SCHEMAS_DIR SCREENSHOT.png

Prints one JSON object: the browser's console errors, each chart's drawn SVG elements and
the numbers it carries, the numbers written on the segment bars, and the segment sizes the
profile topic holds (newest version of each customer with a counted order).
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from decode import Decoder, load_schemas

SEGMENTS = {
    "CHAMPIONS": "Champions", "LOYAL_CUSTOMERS": "Loyal Customers",
    "POTENTIAL_LOYALIST": "Potential Loyalist", "NEW_CUSTOMERS": "New Customers",
    "PROMISING": "Promising", "NEED_ATTENTION": "Need Attention",
    "ABOUT_TO_SLEEP": "About To Sleep", "AT_RISK": "At Risk",
    "CANT_LOSE_THEM": "Can't Lose Them", "HIBERNATING": "Hibernating", "LOST": "Lost",
}


def topic_segments(bootstrap, topic, schemas):
    decoder = Decoder(load_schemas(schemas), None)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"independent-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    })
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for p in parts:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    newest = {}
    deadline = time.time() + 120
    while ends and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        if m.offset() + 1 >= ends.get(m.partition(), 0):
            ends.pop(m.partition(), None)
        headers = dict(m.headers() or [])
        # End markers of woostream's readers (a plain key, no Avro) and restore markers.
        if m.key() is None or m.key().startswith(b"woostream-") or "woostream-marker" in headers:
            continue
        _, key = decoder.decode(m.key())
        k = (key["shop_id"], key["customer"])
        if m.value() is None:
            newest.pop(k, None)
            continue
        _, p = decoder.decode(m.value())
        if k not in newest or newest[k]["version"] < p["version"]:
            newest[k] = p
    c.close()
    counts = {name: 0 for name in SEGMENTS.values()}
    for p in newest.values():
        if p["orders_count"] > 0:
            counts[SEGMENTS[p["segment"]]] += 1
    return counts


def main():
    url, bootstrap, topic, schemas, screenshot = sys.argv[1:6]
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2400"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        figures = {}
        for f in driver.find_elements(By.CSS_SELECTOR, "figure"):
            svg = f.find_elements(By.CSS_SELECTOR, "svg")
            drawn = f.find_elements(By.CSS_SELECTOR, "svg rect, svg path, svg polyline, svg line")
            figures[f.get_attribute("id")] = {
                "svg": len(svg),
                "drawn": len(drawn),
                "width": svg[0].size["width"] if svg else 0,
                "values": json.loads(f.get_attribute("data-values")),
            }
        labels = [t.text.strip() for t in driver.find_elements(By.CSS_SELECTOR, "figure#segments svg text")]
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        driver.save_screenshot(screenshot)
        title = driver.title
    finally:
        driver.quit()
    print(json.dumps({
        "title": title,
        "console_errors": errors,
        "figures": figures,
        "segment_labels": labels,
        "topic_segments": topic_segments(bootstrap, topic, schemas),
    }))


if __name__ == "__main__":
    main()
