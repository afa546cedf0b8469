"""Everyday sentences in other languages, spoken by espeak-ng: speech the English recogniser must
not turn into confident English. Validation languages choose the trust thresholds; the test
languages (and URDU's real broadcast speech) only ever measure them. Urdu itself is in neither
list: URDU is a test corpus."""

from __future__ import annotations

VALIDATION: dict[str, list[str]] = {
    "de": [
        "Ich habe heute Morgen den Zug verpasst und musste eine Stunde warten.",
        "Kannst du mir bitte sagen, wo der nächste Supermarkt ist?",
        "Wir treffen uns am Wochenende mit unseren Freunden im Park.",
        "Das Wetter ist heute viel besser als gestern.",
        "Meine Schwester arbeitet seit drei Jahren in einem Krankenhaus.",
    ],
    "fr": [
        "Je suis allé au marché ce matin pour acheter des légumes.",
        "Est-ce que tu veux venir dîner chez nous samedi soir ?",
        "Le train pour Lyon part dans dix minutes.",
        "Mon frère apprend à jouer du piano depuis l'été dernier.",
        "Il fait très froid aujourd'hui, prends ton manteau.",
    ],
    "es": [
        "Mañana tengo una reunión muy importante en la oficina.",
        "¿Sabes a qué hora cierra la farmacia los domingos?",
        "Mis abuelos viven en un pueblo pequeño cerca del mar.",
        "Hemos preparado una cena sencilla para todos los invitados.",
        "El autobús llegó tarde otra vez esta mañana.",
    ],
    "it": [
        "Stasera andiamo a mangiare una pizza con i colleghi.",
        "Non ho ancora finito di leggere il libro che mi hai prestato.",
        "La biblioteca è chiusa il lunedì pomeriggio.",
        "Mio padre si alza ogni giorno alle sei per andare al lavoro.",
        "Domani pioverà, quindi porta l'ombrello.",
    ],
    "ru": [
        "Вчера вечером мы долго гуляли по набережной.",
        "Скажите, пожалуйста, как пройти к вокзалу?",
        "Моя дочь учится в университете на втором курсе.",
        "Сегодня в магазине не было свежего хлеба.",
        "Мы планируем поехать на дачу в субботу утром.",
    ],
    "cmn": [
        "我今天早上坐地铁去公司，路上人很多。",
        "请问附近有没有比较好的饭馆？",
        "周末我们打算带孩子去公园放风筝。",
        "这本书我已经看了一半了，写得很有意思。",
        "明天可能会下雨，出门记得带伞。",
    ],
    "hi": [
        "मैं आज सुबह जल्दी उठकर बाज़ार गया था।",
        "क्या आप मुझे स्टेशन का रास्ता बता सकते हैं?",
        "हमारे घर के पास एक छोटा सा पार्क है।",
        "कल शाम को हम सब दोस्त मिलकर खाना खाएँगे।",
        "मेरी माँ हर रोज़ सुबह चाय बनाती हैं।",
    ],
    "ar": [
        "ذهبت إلى السوق صباح اليوم لشراء الخضار.",
        "هل يمكنك أن تخبرني أين تقع المحطة؟",
        "نحن نسكن في شقة صغيرة قرب الجامعة.",
        "سيأتي أصدقائي لزيارتنا يوم الجمعة.",
        "الجو حار جدا في الصيف هنا.",
    ],
}

TEST: dict[str, list[str]] = {
    "pt": [
        "Ontem à noite fomos ao cinema com os nossos vizinhos.",
        "Você sabe onde fica a estação de metrô mais próxima?",
        "A minha avó faz o melhor bolo de laranja da cidade.",
        "Preciso terminar este relatório antes de sexta-feira.",
        "O restaurante estava cheio, então voltamos para casa.",
    ],
    "nl": [
        "Ik fiets elke ochtend naar mijn werk, ook als het regent.",
        "Weet jij hoe laat de winkel vandaag dichtgaat?",
        "Onze buren hebben een nieuwe hond gekocht.",
        "We gaan deze zomer een week naar de kust.",
        "Mijn broer studeert geschiedenis in Utrecht.",
    ],
    "pl": [
        "Wczoraj wieczorem oglądaliśmy film w domu.",
        "Czy możesz mi powiedzieć, gdzie jest przystanek autobusowy?",
        "Moja siostra pracuje w szkole jako nauczycielka.",
        "W sobotę pojedziemy do babci na obiad.",
        "Dzisiaj jest bardzo zimno i pada śnieg.",
    ],
    "tr": [
        "Bu sabah işe giderken çok trafik vardı.",
        "Bana en yakın eczanenin nerede olduğunu söyler misiniz?",
        "Hafta sonu ailemle birlikte köye gideceğiz.",
        "Kardeşim üniversitede mühendislik okuyor.",
        "Akşam yemeğinde mercimek çorbası içtik.",
    ],
    "ja": [
        "きょうは あさから あめが ふって います。",
        "えきまでの みちを おしえて いただけますか。",
        "しゅうまつは ともだちと えいがを みに いきます。",
        "わたしの いもうとは だいがくで えいごを べんきょうして います。",
        "あしたは はやく おきなければ なりません。",
    ],
    "vi": [
        "Sáng nay tôi đi chợ mua rau và trái cây.",
        "Bạn có biết bến xe buýt ở đâu không?",
        "Cuối tuần này gia đình tôi sẽ về quê.",
        "Em gái tôi đang học năm thứ hai đại học.",
        "Hôm nay trời rất nóng, nhớ uống nhiều nước.",
    ],
    "sw": [
        "Leo asubuhi nilienda sokoni kununua matunda.",
        "Unaweza kunionyesha njia ya kwenda hospitalini?",
        "Rafiki yangu anaishi karibu na bahari.",
        "Tutakutana kesho jioni baada ya kazi.",
        "Mvua imenyesha sana wiki hii.",
    ],
    "fi": [
        "Kävin tänä aamuna kaupassa ostamassa maitoa.",
        "Tiedätkö, mihin aikaan juna lähtee Helsinkiin?",
        "Meidän perheemme viettää kesän mökillä järven rannalla.",
        "Veljeni opiskelee lääkäriksi yliopistossa.",
        "Tänään on todella kylmä ja tuulinen päivä.",
    ],
}
